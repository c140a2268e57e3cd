"""Issue 17: the CSM reviews an ID-scheme change on a client's Identities page in a real
Chromium against a real gunicorn over HTTPS, at 1280 and at 390 px (no sideways scroll):
proposals with the preview, merge one, merge all, undo."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from conftest import TEST_PASSWORD, beacon_body, watched_page

from app.billing import drift
from app.extensions import db

# one_database: the page in a browser; merges are tested in both passes by test_identity_merges.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


@pytest.fixture
def page(browser, live_server):
    context, page = watched_page(browser)
    yield page
    context.close()


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_csm_reviews_merges_and_undoes_at_1280_and_390(page, live_server, client, make_client, make_staff,
                                                       screenshots_dir):
    acme, key = make_client(name="Acme Drift", anonymised=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for n in range(5):  # e-mail IDs, then the same people under employee numbers
        for when, student_id in ((now - dt.timedelta(days=12, hours=n), f"person.{n}@acme.example"),
                                 (now - dt.timedelta(days=3, hours=n), f"E{n:07d}".replace("E", "9"))):
            with time_machine.travel(when, tick=False):
                assert client.post("/api/v1/beacons", json=beacon_body(
                    key, student_id=student_id, student_name=f"Person{n}, Pat")).status_code == 204
    assert len(drift.check_drift(db.session, clients=[acme])) == 1
    csm = make_staff("csm", email="casey@vendor.example")

    page.goto(live_server.url + "/login")
    page.fill("#email", csm.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    page.goto(f"{live_server.url}/admin/clients/{acme.slug}")
    page.click("nav.tabs >> text=Identities")
    page.wait_for_selector("h1:has-text('Learner identities of Acme Drift')")
    assert page.locator("#drifts tbody tr").count() == 1
    assert "email → numeric" in page.text_content("#drifts")
    assert page.locator("tr[data-pair]").count() == 5
    # Twelve days ago may be last month: the preview shows each period's own figures.
    effect = drift.preview(db.session, acme, None, dt.datetime.now(dt.UTC).date())
    assert sum(e.before for e in effect) == 10 and sum(e.after for e in effect) == 5 + (effect[1].after > 0) * 5
    for e in effect:
        assert f"{e.before} → {e.after}" in page.text_content("#preview")
    assert no_sideways_scroll(page)
    page.screenshot(path=str(screenshots_dir / "identities-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})
    assert no_sideways_scroll(page), "the proposals scroll inside their table at 390 px"
    page.screenshot(path=str(screenshots_dir / "identities-390.png"), full_page=True)

    page.click("tr[data-pair] >> nth=0 >> button:has-text('Merge')")
    page.wait_for_selector("text=Merged 1 pair(s)")
    assert page.locator("tr[data-pair]").count() == 4
    assert page.get_attribute("#confirm", "required") is not None, "merge all asks for the confirmation first"
    page.check("#confirm")
    page.click("#merge-all button")
    page.wait_for_selector("text=Merged 4 pair(s)")
    assert page.locator("tr[data-pair]").count() == 0 and page.locator("tr[data-merge]").count() == 5
    assert no_sideways_scroll(page)
    page.screenshot(path=str(screenshots_dir / "identities-merged-390.png"), full_page=True)

    page.click("tr[data-merge] >> nth=0 >> button:has-text('Undo')")
    page.wait_for_selector("text=Merge undone")
    assert page.locator("tr[data-pair]").count() == 1, "the undone pair is proposed again"
    assert page.locator("tr[data-merge] .badge:has-text('undone')").count() == 1
    page.set_viewport_size({"width": 1280, "height": 900})
    assert no_sideways_scroll(page)
    page.screenshot(path=str(screenshots_dir / "identities-undone-1280.png"), full_page=True)
    assert "person." not in page.content() and "Pat" not in page.content(), "nothing plain on the page"
    assert not page.problems, page.problems
