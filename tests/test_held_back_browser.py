"""A CSM finds beacons held back for a placeholder ID, previews and releases them, in a real Chromium."""

from __future__ import annotations

import re

import pytest
from test_admin_browser import page, post_beacon, shot, sign_in  # noqa: F401  (page is a fixture)

# one_database: the pages in a browser; holding back is tested in both passes by test_held_back.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def test_csm_sees_held_back_launches_and_releases_them(page, live_server, make_staff, make_client,  # noqa: F811
                                                         screenshots_dir, tls_ca):
    acme, key = make_client(name="Acme", origins=["https://lms.acme.example"])
    post_beacon(live_server, tls_ca, key, "jane.doe", "Doe, Jane")
    post_beacon(live_server, tls_ca, key, "undefined", "Smith, Ann")
    post_beacon(live_server, tls_ca, key, " UNDEFINED ", "Jones, Bob", course="Anti-Bribery")
    sign_in(page, live_server, make_staff("csm"))

    page.goto(f"{live_server.url}/billing/{acme.slug}")
    notice = page.locator("#held-back")
    assert "2 launches held back" in notice.inner_text()
    assert page.locator("#stat-unique-users .value").inner_text() == "1"
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, screenshots_dir, "30-billing-held-back-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    notice.locator("text=Review and release").click()
    page.wait_for_selector("#held-back-table")
    page.click("text=Release undefined… >> nth=0")
    page.wait_for_selector("#release-preview")
    assert "2 beacon(s), 2 of them launches" in page.locator("#release-preview").inner_text()
    shot(page, screenshots_dir, "31-held-back-preview")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, screenshots_dir, "32-held-back-preview-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("#release-preview button[type=submit]")  # not ticked: refused, nothing released
    page.wait_for_selector("text=Tick the box to confirm the release.")
    page.check("#confirm")
    page.click("#release-preview button[type=submit]")
    page.wait_for_url(re.compile(r".*/held-back$"))
    page.wait_for_selector("text=2 held-back beacon(s) released")

    page.goto(f"{live_server.url}/billing/{acme.slug}")
    assert page.locator("#held-back").count() == 0
    assert page.locator("#stat-unique-users .value").inner_text() == "2"
    assert page.locator("#stat-launches .value").inner_text() == "3"
    assert not page.problems, page.problems
