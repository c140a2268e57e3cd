"""A walkthrough in real Chromium against real gunicorn: the go-live feed's order, the billing range
presets and a bad range, and every page at 390 px without horizontal overflow.

Screenshots go to ``screenshots_dir`` (``walk-*.png``) for people to look at.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import requests
from conftest import TEST_PASSWORD, beacon_body, watched_page

# one_database: the pages in a browser.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def context_page(browser, width: int, height: int = 900):
    return watched_page(browser, width, height, 15_000)


def sign_in(page, live_server, user) -> None:
    page.goto(live_server.url + "/login")
    page.fill("#email", user.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def send(live_server, tls_ca, key: str, student: str) -> None:
    answer = requests.post(live_server.url + "/api/v1/beacons", verify=tls_ca["ca"], timeout=10,
                           json=beacon_body(key, student_id=student, event_id=str(uuid.uuid4())))
    assert answer.status_code == 204, answer.text


def row_ids(page) -> list[int]:
    return [int(i) for i in page.eval_on_selector_all("#beacons tbody tr", "rows => rows.map(r => r.dataset.id)")]


def test_golive_feed_is_newest_first_and_highlights_only_new_arrivals(browser, live_server, make_client,
                                                                      make_staff, screenshots_dir, tls_ca):
    acme, key = make_client(name="Acme Corp")
    for i in range(40):          # more than the page shows (25) and than the poll's overlap reaches back
        send(live_server, tls_ca, key, f"old-{i}")
    context, page = context_page(browser, 1280)
    sign_in(page, live_server, make_staff("csm"))
    # The page's CSP allows no eval, so waits are on responses and locators, not page functions.
    with page.expect_response(lambda r: "beacons.json" in r.url, timeout=20_000) as first_poll:
        page.goto(f"{live_server.url}/admin/clients/{acme.slug}/go-live")
        shown = row_ids(page)
    assert first_poll.value.ok
    assert len(first_poll.value.json()["beacons"]) > 0, "the poll re-sends the overlap of older beacons"
    assert len(shown) == 25 and shown == sorted(shown, reverse=True)
    page.wait_for_timeout(300)   # the poll's answer handled
    assert row_ids(page) == shown, "the first poll added older beacons"
    for i in range(3):
        send(live_server, tls_ca, key, f"new-{i}")
    page.locator("#beacons tbody tr.new").nth(2).wait_for(timeout=20_000)
    ids = row_ids(page)
    assert ids == sorted(ids, reverse=True), ids
    assert ids[3:] == shown and len(ids) == 28
    new_students = page.eval_on_selector_all("#beacons tbody tr.new td:nth-child(4)", "c => c.map(x => x.textContent)")
    assert new_students == ["new-2", "new-1", "new-0"]
    page.screenshot(path=str(screenshots_dir / "walk-golive-new-arrivals.png"), full_page=True)
    assert page.problems == []
    context.close()


def test_presets_and_a_bad_range_return_to_the_form(browser, live_server, make_client, make_staff,
                                                    screenshots_dir):
    licence_start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=200)
    acme, _ = make_client(name="Acme Corp", licence_start=licence_start,
                          licence_end=licence_start + dt.timedelta(days=365))
    context, page = context_page(browser, 1280)
    sign_in(page, live_server, make_staff("billing"))
    today = dt.datetime.now(dt.UTC).date()
    page.goto(f"{live_server.url}/billing/{acme.slug}")
    lead = page.locator("p.lead").inner_text()
    assert f"{licence_start.isoformat()} to {today.isoformat()}" in lead and "current licence period" in lead
    expected = {
        "This month": (today.replace(day=1), today),
        "Last month": ((today.replace(day=1) - dt.timedelta(days=1)).replace(day=1),
                       today.replace(day=1) - dt.timedelta(days=1)),
        "This licence period to date": (licence_start, today),
        "Last 90 days": (today - dt.timedelta(days=89), today),
    }
    for label, (start, end) in expected.items():
        page.get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(re.compile(rf".*from={start.isoformat()}&to={end.isoformat()}$"))
        assert f"{start.isoformat()} to {end.isoformat()}" in page.locator("p.lead").inner_text()
        assert page.locator("a.preset.active").inner_text() == label
        assert page.input_value("#from") == start.isoformat() and page.input_value("#to") == end.isoformat()
    page.screenshot(path=str(screenshots_dir / "walk-billing-preset.png"), full_page=True)
    # A custom range the wrong way round comes back to the form with the reason and the dates typed.
    page.fill("#from", "2026-11-20")
    page.fill("#to", "2026-11-02")
    page.get_by_role("button", name="Show custom range").click()
    page.wait_for_selector("#range-error")
    assert "'from' must not be after 'to'" in page.locator("#range-error").inner_text()
    assert page.input_value("#from") == "2026-11-20" and page.input_value("#to") == "2026-11-02"
    page.screenshot(path=str(screenshots_dir / "walk-billing-bad-range.png"), full_page=True)
    # Centuries: refused at once with the cap stated.
    page.goto(f"{live_server.url}/billing/{acme.slug}?from=0001-01-01")
    assert "at most 1096 days" in page.locator("#range-error").inner_text()
    assert page.problems == []
    context.close()


def test_every_page_fits_a_390px_phone(browser, live_server, make_client, make_staff, screenshots_dir, tls_ca):
    acme, key = make_client(name="Acme Corporation International", seat_limit=50,
                            origins=["https://lms.acme-corporation-international.example"])
    make_client(name="Globex", anonymised=True)
    for i in range(6):
        answer = requests.post(live_server.url + "/api/v1/beacons", verify=tls_ca["ca"], timeout=10,
                               headers={"Origin": "https://lms.acme-corporation-international.example"},
                               json=beacon_body(key, student_id=f"learner-{i}@acme.example",
                                                course=f"Course number {i % 3}"))
        assert answer.status_code == 204, answer.text
    admin = make_staff("admin", email="admin@vendor.example")
    client_user = make_staff("client", client=acme, email="reader@acme.example")
    from app import packages as package_service
    from app.extensions import db
    from app.staff import services as staff_service

    staff_service.create_token(db.session, client_user, actor="test", label="nightly invoicing export")
    package_service.package_bytes(db.session, client=acme, course_title="Anti-Bribery and Corruption",
                                  scorm_version="1.2", content=None, mode="deployed",
                                  server_url=live_server.url, issued_by="admin@vendor.example")
    learner_page = None
    pages = {
        "admin-clients": "/admin/", "admin-client": f"/admin/clients/{acme.slug}",
        "admin-settings": f"/admin/clients/{acme.slug}/edit", "admin-mode": f"/admin/clients/{acme.slug}/mode",
        "admin-packages": f"/admin/clients/{acme.slug}/packages",
        "admin-golive": f"/admin/clients/{acme.slug}/go-live", "admin-new-client": "/admin/clients/new",
        "admin-audit": "/admin/audit", "admin-staff": "/admin/staff", "admin-tokens": "/admin/staff/tokens",
        "billing-overview": "/billing/", "billing-client": f"/billing/{acme.slug}",
        "billing-learners": f"/billing/{acme.slug}/learners",
    }
    context, page = context_page(browser, 390, 844)
    page.goto(live_server.url + "/login")
    overflow = {}

    def check(name):
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(screenshots_dir / f"walk-390-{name}.png"), full_page=True)
        if width > 390:
            overflow[name] = width

    check("login")
    sign_in(page, live_server, admin)
    for name, path in pages.items():
        response = page.goto(live_server.url + path)
        assert response.status == 200, (name, response.status)
        check(name)
        if name == "billing-learners":
            learner_page = page.locator("#learners tbody tr a").first.get_attribute("href")
    page.goto(live_server.url + learner_page)
    check("billing-learner")
    # The header's Sign out stays within the screen.
    box = page.locator("header form button, header button").last.bounding_box()
    assert box and box["x"] + box["width"] <= 390
    context.close()
    context, page = context_page(browser, 390, 844)
    sign_in(page, live_server, client_user)
    check("client-home")
    assert overflow == {}, overflow
    context.close()
