"""API tokens made on the pages and the webhook deliveries page, in a real Chromium against a real
gunicorn over HTTPS, at 1280 and at 390 px (nothing wider than the screen)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from billing_helpers import post_all, workload
from conftest import TEST_PASSWORD, watched_page
from test_webhook_deliveries import ACME_LEARNERS, app_config, hook, world  # noqa: F401  (fixtures)

from app.admin.webhook_deliveries import PAGE_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


@pytest.fixture
def page(browser, live_server):
    context, page = watched_page(browser)
    yield page
    context.close()


def sign_in(page, live_server, user) -> None:
    page.goto(live_server.url + "/login")
    page.fill("#email", user.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/(billing/.*)?$"))


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def usage(live_server, tls_ca, slug, token):
    return requests.get(f"{live_server.url}/api/v1/clients/{slug}/usage?from=2026-11-01&to=2026-11-30",
                        headers={"Authorization": f"Bearer {token}"}, verify=tls_ca["ca"], timeout=30)


def test_a_client_user_makes_a_token_sees_it_once_and_revokes_it(page, live_server, make_client, make_staff,
                                                                 screenshots_dir, tls_ca):
    acme, _ = make_client(name="Acme")
    user = make_staff("client", email="cleo@acme.example", client=acme)
    sign_in(page, live_server, user)
    page.click("nav >> text=API tokens")
    page.wait_for_selector("#new-token")
    page.fill("#label", "")
    page.click("#new-token button[type=submit]")
    assert page.locator(".field-error").first.inner_text().startswith("Give the token a name")
    page.fill("#label", "Acme invoicing")
    page.fill("#days", "30")
    page.click("#new-token button[type=submit]")
    token = page.locator("#api-token").inner_text()
    assert token.startswith("tk_") and usage(live_server, tls_ca, acme.slug, token).status_code == 200
    page.set_viewport_size({"width": 390, "height": 800})
    assert fits(page), "the token shown once fits a phone"
    page.screenshot(path=str(screenshots_dir / "tokens-shown-390.png"), full_page=True)
    page.click("text=Back to the tokens")
    row = page.locator("#tokens tbody tr", has_text="Acme invoicing")
    assert token not in page.content() and row.locator("code").inner_text() == token[:11]
    assert fits(page), "the token list scrolls inside its table at 390 px"
    page.screenshot(path=str(screenshots_dir / "tokens-list-390.png"), full_page=True)
    row.locator("input[type=checkbox]").check()
    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector(".flash-success")
    assert "revoked" in page.locator("#tokens tbody tr", has_text="Acme invoicing").inner_text()
    assert usage(live_server, tls_ca, acme.slug, token).status_code == 401
    assert page.problems == []


def test_an_admin_makes_a_token_for_a_billing_user(page, live_server, make_client, make_staff, screenshots_dir,
                                                   tls_ca):
    acme, _ = make_client(name="Acme")
    bill = make_staff("billing", email="bill@vendor.example")
    admin = make_staff("admin", email="admin@vendor.example")
    sign_in(page, live_server, admin)
    page.goto(live_server.url + "/admin/staff/tokens")
    page.select_option("#owner", label="bill@vendor.example (billing)")
    page.fill("#label", "Month-end export")
    page.click("#new-token button[type=submit]")
    token = page.locator("#api-token").inner_text()
    assert bill.email in page.locator(".key-panel").inner_text()
    assert usage(live_server, tls_ca, acme.slug, token).status_code == 200
    page.screenshot(path=str(screenshots_dir / "tokens-admin-shown.png"), full_page=True)
    page.click("text=Back to the tokens")
    assert "Month-end export" in page.locator("#tokens").inner_text()
    page.set_viewport_size({"width": 390, "height": 800})
    assert fits(page)
    page.screenshot(path=str(screenshots_dir / "tokens-admin-390.png"), full_page=True)
    assert page.problems == []


def test_deliveries_page_filters_pages_and_opens_a_payload_at_1280_and_390(page, live_server, make_staff, world,
                                                                           screenshots_dir):
    sign_in(page, live_server, make_staff("csm", email="casey@vendor.example"))
    page.goto(f"{live_server.url}/admin/webhooks/{world}")
    rows = page.locator("#deliveries tbody tr")
    assert rows.count() == PAGE_SIZE
    height = page.evaluate("document.documentElement.scrollHeight")
    first = rows.first.locator("details.payload")
    assert not first.locator("pre").is_visible(), "the payload starts collapsed"
    first.locator("summary").click()
    assert '"learner_pseudonymised": true' in first.locator("pre").inner_text()
    page.screenshot(path=str(screenshots_dir / "webhook-deliveries-1280.png"), full_page=True)
    page.select_option("#status", "delivered")
    page.select_option("#type", "learner.completed")
    page.click("#delivery-filter button[type=submit]")
    page.wait_for_url(re.compile(r".*status=delivered.*"))
    assert rows.count() == 1 and "Acme" in rows.first.inner_text()
    page.select_option("#type", "")
    page.click("#delivery-filter button[type=submit]")
    page.wait_for_url(lambda url: "status=delivered" in url and "learner.completed" not in url)
    page.click("nav.pager >> text=Older")
    page.wait_for_url(re.compile(r".*page=2.*"))
    assert rows.count() == ACME_LEARNERS + 1 - PAGE_SIZE
    assert page.locator("#status").input_value() == "delivered", "the filter is kept across pages"
    page.goto(f"{live_server.url}/admin/webhooks/{world}")
    page.set_viewport_size({"width": 390, "height": 800})
    assert fits(page), "the deliveries scroll inside their table at 390 px"
    assert page.evaluate("document.documentElement.scrollHeight") < 3 * height, "a page, not thousands of rows"
    page.screenshot(path=str(screenshots_dir / "webhook-deliveries-390.png"), full_page=True)
    assert page.problems == []


CHART_TEXTS = """(selector) => [...document.querySelectorAll(selector)].map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left, right: r.right, height: r.height};
})"""


def test_the_usage_chart_is_legible_at_390_px(page, live_server, client, make_client, make_staff,
                                              screenshots_dir):
    """60 days of use: at 390 px the phone's chart shows (wide one hidden), its date labels, values and legend
    at a readable size without overlapping, inside the screen; at 1280 px the wide chart as before."""
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=n) for n in range(59, -1, -1)]
    acme, key = make_client(name="Acme Learning")
    post_all(client, key, workload(days, ["Fire Safety", "GDPR Basics"], students=40, per_day=6, seed=7))
    sign_in(page, live_server, make_staff("client", client=acme, email="reader@acme.example"))
    url = f"{live_server.url}/billing/{acme.slug}?from={days[0].isoformat()}&to={days[-1].isoformat()}"
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url)
    narrow = page.locator("svg.chart-narrow")
    assert narrow.is_visible() and not page.locator("svg.chart").is_visible()
    assert narrow.locator("rect.bar").count() >= 60
    box = narrow.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] > 150
    assert fits(page)
    dates = page.evaluate(CHART_TEXTS, "svg.chart-narrow text.date")
    assert 2 <= len(dates) <= 4
    assert all(a["right"] + 4 <= b["left"] for a, b in zip(dates, dates[1:])), f"date labels overlap: {dates}"
    legend = page.evaluate(CHART_TEXTS, "svg.chart-narrow text.legend")
    assert [t["text"] for t in legend] == ["Unique users", "Launches"] and legend[0]["right"] < legend[1]["left"]
    every = page.evaluate(CHART_TEXTS, "svg.chart-narrow text")
    assert min(t["height"] for t in every) >= 10, "text at least about 10 px tall on the phone"
    assert all(box["x"] - 1 <= t["left"] and t["right"] <= box["x"] + box["width"] + 1 for t in every)
    narrow.screenshot(path=str(screenshots_dir / "billing-chart-390.png"))
    page.screenshot(path=str(screenshots_dir / "billing-client-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    wide = page.locator("svg.chart")
    assert wide.is_visible() and not narrow.is_visible()
    assert len(page.evaluate(CHART_TEXTS, "svg.chart text.date")) > 4
    assert page.problems == []
