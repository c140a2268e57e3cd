"""In a real Chromium against the HTTPS live server, at 1280 and 390 px (no horizontal overflow): an admin
opts in to every client's alerts on their account page, sets a client's CSM and edits its term in force on
the client form, sees the CSM on its page and the opt-in on the staff page; a billing user follows the
links to a client's read-only licence terms."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import watched_page
from test_walkthrough_browser import send, sign_in

from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import Client, StaffUser

# one_database: pages in a browser; the behaviour is tested in both passes by test_alert_recipients,
# test_client_form_term and test_billing_terms.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def _fits(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url


@pytest.mark.parametrize("width", [1280, 390])
def test_admin_sets_alert_recipients_and_the_term_billing_reads_the_terms(browser, live_server, make_client,
                                                                         make_staff, screenshots_dir, tls_ca,
                                                                         width):
    shot = lambda page, name: page.screenshot(  # noqa: E731
        path=str(screenshots_dir / f"alert-recipients-{width}-{name}.png"), full_page=True)
    acme, key = make_client(name="Acme Corporation International", seat_limit=10)
    [term] = licence_terms.terms(db.session, acme.id)
    for student in ("a", "b", "c"):
        send(live_server, tls_ca, key, student)
    admin = make_staff("admin", email="ada.lovelace@vendor.example")
    make_staff("csm", email="casey.customer-success@vendor.example")
    context, page = watched_page(browser, width, 900, 15_000)
    sign_in(page, live_server, admin)

    page.goto(f"{live_server.url}/account/security")
    panel = page.locator("#alert-mails")
    panel.get_by_label("E-mail me every client's alerts").check()
    panel.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/account/security$"))
    assert "You now receive every client's alert e-mails." in page.content()
    _fits(page, width)
    shot(page, "account")

    page.goto(f"{live_server.url}/admin/clients/{acme.slug}/edit")
    assert page.locator("#term-seat_limit").input_value() == "10"
    page.select_option("#csm", "casey.customer-success@vendor.example")
    page.fill("#term-seat_limit", "12")
    _fits(page, width)
    shot(page, "client-form")
    page.click("button:has-text('Save settings')")
    page.wait_for_url(re.compile(rf".*/admin/clients/{acme.slug}$"))
    assert "casey.customer-success@vendor.example" in page.locator("#client-csm").inner_text()
    assert "3 / 12" in page.locator(".stats").inner_text()
    _fits(page, width)
    shot(page, "client-detail")

    page.goto(f"{live_server.url}/admin/staff")
    assert page.locator(f"[name='u{admin.id}-all_client_alerts']").is_checked()
    _fits(page, width)
    shot(page, "staff")

    db.session.rollback()
    assert db.session.get(StaffUser, admin.id).all_client_alerts is True
    assert db.session.get(Client, acme.id).csm.email == "casey.customer-success@vendor.example"
    assert db.session.get(type(term), term.id).seat_limit == 12

    context.close()
    context, page = watched_page(browser, width, 900, 15_000)
    sign_in(page, live_server, make_staff("billing", email="bill@vendor.example"))
    page.goto(f"{live_server.url}/billing/")
    _fits(page, width)
    shot(page, "billing-overview")
    page.locator(f"tr[data-slug='{acme.slug}']").get_by_role("link", name="Licence terms").click()
    page.wait_for_url(re.compile(rf".*/billing/{acme.slug}/licence$"))
    assert "3 / 12" in page.locator("#stat-term-seats").inner_text()
    assert page.locator("a[href^='/admin']").count() == 0
    _fits(page, width)
    shot(page, "billing-terms")
    page.goto(f"{live_server.url}/billing/{acme.slug}")
    page.click("#terms-link")
    page.wait_for_url(re.compile(rf".*/billing/{acme.slug}/licence$"))
    today = dt.datetime.now(dt.UTC).date()
    assert today.isoformat() in page.locator(".lead").inner_text()
    context.close()
