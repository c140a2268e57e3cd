"""A client user in real Chromium against real gunicorn: signs in, sees the chart and table, downloads both CSVs."""

from __future__ import annotations

import csv
import datetime as dt

import pytest
from billing_helpers import post_all, workload
from conftest import TEST_PASSWORD

# one_database: the pages in a browser; the billing figures are tested in both passes.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


def this_month_so_far() -> list[dt.date]:
    today = dt.datetime.now(dt.UTC).date()
    return [today.replace(day=d) for d in range(1, today.day + 1)]


def test_client_user_sees_usage_and_downloads_csvs(browser, live_server, client, make_client, make_staff,
                                                   screenshots_dir, tmp_path):
    from app.extensions import db
    from app.licensing import terms as licence_terms

    acme, key = make_client(name="Acme Learning")
    first = this_month_so_far()[0]  # 25 seats a calendar month: the default range is this month to date
    licence_terms.add_term(db.session, acme, actor="test", starts_on=first, ends_on=first + dt.timedelta(days=364),
                           seat_limit=25, seat_window="month")
    truth = workload(this_month_so_far(), ["Anti-Bribery", "Fire Safety", "GDPR Basics", "Working at Height"],
                     students=18, per_day=8, seed=3)
    post_all(client, key, truth)
    user = make_staff("client", client=acme, email="reader@acme.example")
    staff = make_staff("billing", email="billing@vendor.example")
    month = this_month_so_far()
    # The default range is the current seat window (the month) up to today, never the future.
    start, end = month[0], month[-1]

    context = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    # Anything the pages load must load (the browser's own favicon probe aside); a CSP refusal shows here too.
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and "favicon" not in msg.text and "404" not in msg.text else None)
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/billing/{acme.slug}")

    assert page.locator("h1").inner_text() == "Usage of Acme Learning"
    assert int(page.locator("#stat-unique-users .value").inner_text()) == truth.unique_users(start, end)
    chart = page.locator("svg.chart")
    assert chart.is_visible()
    assert chart.locator("rect.bar").count() >= len(month)
    assert chart.bounding_box()["height"] > 150
    assert page.locator("#course-totals tbody tr").count() == 4
    assert page.locator("#course-days").is_visible()
    page.screenshot(path=str(screenshots_dir / "billing-client-page.png"), full_page=True)
    page.screenshot(path=str(screenshots_dir / "billing-client-top.png"))

    for link, name, header in (("Usage CSV", "usage", "date,course,unique_users,launches"),
                               ("Learners CSV", "learners",
                                "student_id,student_name,course,first_access,last_access,launches,status,"
                                "completed_at,passed_at,failed_at")):
        with page.expect_download() as info:
            page.get_by_role("link", name=link).click()
        download = info.value
        assert download.suggested_filename == f"{acme.slug}-{name}-{start}-{end}.csv"
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert ",".join(rows[0]) == header
        assert len(rows) > 1
        if name == "usage":
            assert sum(int(r[3]) for r in rows[1:] if r[0] != "total") == truth.launches(start, end)
            assert rows[-1][:2] == ["total", "(all courses)"]
            assert int(rows[-1][2]) == truth.unique_users(start, end)

    page.get_by_role("link", name="Who accessed what").click()
    page.wait_for_selector("#learners")
    page.screenshot(path=str(screenshots_dir / "billing-learners.png"), full_page=True)
    page.locator("#learners tbody tr a").first.click()
    page.wait_for_selector("#learner-events")
    page.screenshot(path=str(screenshots_dir / "billing-learner.png"), full_page=True)
    assert not errors, errors
    context.close()

    # The vendor's overview, for the screenshot and a look at the sort links.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", staff.email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.goto(live_server.url + "/billing/?sort=unique_users&dir=desc")
    assert page.locator("#overview tbody tr").first.locator("td").first.inner_text().startswith("Acme Learning")
    page.screenshot(path=str(screenshots_dir / "billing-overview.png"), full_page=True)
    context.close()
