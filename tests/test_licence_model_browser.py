"""The one licence model in a real Chromium against the HTTPS live server: Settings shows the term in
force and links to the terms; a term is edited and removed through the pages (their CSRF tokens);
the seat card of a range that is not a seat window has no percentage; each page fits 1280 and 390 px."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from conftest import beacon_body, watched_page
from test_walkthrough_browser import sign_in

from app.extensions import db
from app.licensing import terms as licence_terms

# one_database: the pages in a browser; the licence model is tested in both passes by test_licence_model.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def _fits(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url


@pytest.mark.parametrize("width", [1280, 390])
def test_settings_link_to_terms_which_are_edited_and_removed_in_the_browser(browser, live_server, make_client,
                                                                            make_staff, screenshots_dir, tls_ca,
                                                                            width):
    acme, key = make_client(name="Acme Corporation International", seat_limit=10)
    today = dt.datetime.now(dt.UTC).date()
    [term] = licence_terms.terms(db.session, acme.id)
    later = licence_terms.add_term(db.session, acme, actor="test", starts_on=term.ends_on + dt.timedelta(days=1),
                                   ends_on=term.ends_on + dt.timedelta(days=365), seat_limit=None)
    for i in range(3):
        answer = requests.post(live_server.url + "/api/v1/beacons", verify=tls_ca["ca"], timeout=10,
                               json=beacon_body(key, student_id=f"learner-{i}"))
        assert answer.status_code == 204, answer.text
    context, page = watched_page(browser, width, 900, 15_000)
    sign_in(page, live_server, make_staff("csm", email="casey@vendor.example"))

    page.goto(f"{live_server.url}/admin/clients/{acme.slug}/edit")
    box = page.locator("#licence-term")
    assert "10 seats per term" in box.inner_text() and page.locator("#seat_limit").count() == 0
    _fits(page, width)
    page.screenshot(path=str(screenshots_dir / f"licence-model-{width}-settings.png"), full_page=True)
    box.get_by_role("link", name="Edit the licence terms").click()
    page.wait_for_url(re.compile(rf".*/admin/clients/{acme.slug}/licence$"))
    _fits(page, width)

    page.locator(f"#term-{term.id}").get_by_role("link", name="Edit").click()
    page.wait_for_url(re.compile(rf".*/licence/terms/{term.id}$"))
    _fits(page, width)
    page.screenshot(path=str(screenshots_dir / f"licence-model-{width}-term-edit.png"), full_page=True)
    page.fill("#term-ends_on", (later.starts_on + dt.timedelta(days=3)).isoformat())  # overlaps the next term
    page.click("button:has-text('Save term')")
    page.wait_for_selector(".field-error")
    assert "Nothing changed: this overlaps the term" in page.locator(".field-error").inner_text()
    _fits(page, width)
    page.fill("#term-ends_on", term.ends_on.isoformat())
    page.fill("#term-seat_limit", "2")
    page.click("button:has-text('Save term')")
    page.wait_for_url(re.compile(rf".*/admin/clients/{acme.slug}/licence$"))
    assert "Licence term saved." in page.content()
    assert "3 / 2" in page.locator(".stats").inner_text()  # the page reads the edited term

    # The seat card: the term's window compares with the limit; a range before it does not.
    page.goto(f"{live_server.url}/billing/{acme.slug}")
    assert page.locator("#stat-seats .value").inner_text().strip() == "3 / 2"
    before = today - dt.timedelta(days=40)
    page.goto(f"{live_server.url}/billing/{acme.slug}?from={before.isoformat()}&to={today.isoformat()}")
    seats = page.locator("#stat-seats").inner_text()
    assert "%" not in seats and "/ 2" not in seats and "not seats" in seats
    _fits(page, width)
    page.screenshot(path=str(screenshots_dir / f"licence-model-{width}-seat-card.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/clients/{acme.slug}/licence/terms/{later.id}")
    page.click("button:has-text('Remove the term')")
    page.wait_for_url(re.compile(rf".*/admin/clients/{acme.slug}/licence$"))
    assert "removed." in page.content() and page.locator(f"#term-{later.id}").count() == 0
    assert page.problems == []
    context.close()
