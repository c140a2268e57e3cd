"""The test browser (tests/chromium_launch.py): Debian's Chromium with Playwright's own settings,
and without the omnibox popup each new window would otherwise build for nobody."""

from __future__ import annotations

import pytest
from chromium_launch import DISABLE, UNUSED_BROWSER_UI, browser_command_lines, disabled_features

# one_database: the browser, not the database.
pytestmark = pytest.mark.one_database


def test_a_new_page_builds_no_omnibox_popup(browser):
    session = browser.new_browser_cdp_session()
    context = browser.new_context()
    try:
        context.new_page().set_content("<h1>a page</h1>")
        urls = [target["url"] for target in session.send("Target.getTargets", {"filter": [{}]})["targetInfos"]]
    finally:
        context.close()
        session.detach()
    assert "about:blank" in urls
    assert not [url for url in urls if url.startswith("chrome://omnibox-popup")], urls


def test_playwrights_own_disabled_features_still_apply(browser):
    (argv,) = [argv for argv in browser_command_lines().values() if any(a.startswith(DISABLE) for a in argv)]
    taken = disabled_features(argv)
    # One list only: Chromium would read the last and drop the others.
    assert len([arg for arg in argv if arg.startswith(DISABLE)]) == 1
    assert set(UNUSED_BROWSER_UI) <= set(taken)
    # Playwright's own (its list as of 1.5x; each is one it relies on, e.g. PaintHolding for screenshots).
    assert {"PaintHolding", "ThirdPartyStoragePartitioning", "MediaRouter"} <= set(taken), taken
