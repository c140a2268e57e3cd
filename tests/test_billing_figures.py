"""The billing page, both CSVs and the usage API give the same figures, and they match what was sent.

A multi-day, multi-course workload is posted through the real beacon endpoint
with the clock frozen at each beacon's time (including the first and last
second of UTC days), next to another client's traffic that must not count.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from billing_helpers import (
    page_course_days,
    page_course_footer,
    page_course_totals,
    page_tree,
    post_all,
    read_csv,
    stat,
    workload,
)

from app.billing import figures as billing
from app.extensions import db
from app.staff import services as staff_service

COURSES = ["Anti-Bribery", "Fire Safety", "GDPR Basics"]
DAYS = [dt.date(2026, 10, 31)] + [dt.date(2026, 11, d) for d in (1, 2, 3, 5, 6, 30)] + [dt.date(2026, 12, 1)]
TODAY = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)

RANGES = [
    (dt.date(2026, 11, 1), dt.date(2026, 11, 30)),   # the month: edges are days with use
    (dt.date(2026, 11, 2), dt.date(2026, 11, 5)),    # includes a day without use (the 4th)
    (dt.date(2026, 11, 3), dt.date(2026, 11, 3)),    # one day
    (dt.date(2026, 10, 31), dt.date(2026, 12, 1)),   # across months
    (dt.date(2026, 11, 7), dt.date(2026, 11, 29)),   # nothing at all
]


@pytest.fixture
def seeded(app, client, make_client, make_staff):
    acme, acme_key = make_client(name="Acme", seat_limit=10)
    other, other_key = make_client(name="Other")
    truth = workload(DAYS, COURSES, students=9, per_day=9, seed=11)
    post_all(client, acme_key, truth)
    # Another client's learners use the same IDs and course titles: none of it may count for Acme.
    post_all(client, other_key, workload(DAYS, COURSES, students=9, per_day=6, seed=12))
    user = make_staff("billing")
    token = staff_service.create_token(db.session, user, actor="test")
    return acme, truth, user, token


def api_usage(http, token, slug, start, end) -> dict:
    response = http.get(f"/api/v1/clients/{slug}/usage?from={start}&to={end}",
                        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(("start", "end"), RANGES, ids=[f"{a}..{b}" for a, b in RANGES])
def test_page_csvs_and_api_agree_with_ground_truth(client, login, seeded, start, end):
    acme, truth, user, token = seeded
    login(user)
    query = f"from={start}&to={end}"
    page = page_tree(client.get(f"/billing/{acme.slug}?{query}"))
    usage_csv = read_csv(client.get(f"/billing/{acme.slug}/usage.csv?{query}"))
    usage_rows = [r for r in usage_csv if r["date"] != "total"]
    total_rows = [r for r in usage_csv if r["date"] == "total"]
    learner_rows = read_csv(client.get(f"/billing/{acme.slug}/learners.csv?{query}"))
    api = api_usage(client, token, acme.slug, start, end)

    # Totals: distinct learners over the range, not a sum of daily figures.
    expected_users = truth.unique_users(start, end)
    assert int(stat(page, "stat-unique-users")) == api["unique_users"] == expected_users
    assert int(stat(page, "stat-launches")) == api["launches"] == truth.launches(start, end)
    assert int(stat(page, "stat-completers")) == truth.completers(start, end)
    if start != end and expected_users:
        assert expected_users < truth.daily_unique_sum(start, end), "workload must repeat learners across days"

    # Per course over the range.
    expected_totals = truth.course_totals(start, end)
    assert page_course_totals(page) == expected_totals
    assert {c["course"]: (c["unique_users"], c["launches"]) for c in api["courses"]} == {
        course: (users, launches) for course, (users, launches, _) in expected_totals.items()}

    # Per course and date: page table, usage.csv and the API.
    expected_days = truth.course_days(start, end)
    assert page_course_days(page) == expected_days
    assert page_course_footer(page) == {course: (users, launches)
                                        for course, (users, launches, _) in expected_totals.items()}
    assert {(r["date"], r["course"]): (int(r["unique_users"]), int(r["launches"])) for r in usage_rows} == expected_days
    assert {(d["date"], c["course"]): (d["unique_users"], d["launches"])
            for c in api["courses"] for d in c["days"]} == expected_days
    assert [(r["date"], r["course"]) for r in usage_rows] == sorted(expected_days)

    # usage.csv's billable totals after the day rows: per course, then the whole client, each the
    # API's distinct figure over the range (so less than the column's sum whenever a learner repeats).
    assert usage_csv[len(usage_rows):] == total_rows
    assert [(r["course"], int(r["unique_users"]), int(r["launches"])) for r in total_rows] == [
        *((c["course"], c["unique_users"], c["launches"]) for c in api["courses"]),
        ("(all courses)", api["unique_users"], api["launches"])]
    for course in api["courses"]:
        day_sum = sum(int(r["unique_users"]) for r in usage_rows if r["course"] == course["course"])
        assert course["unique_users"] <= day_sum
        if len(course["days"]) > 1:
            assert course["unique_users"] < day_sum, "workload must repeat learners across days"

    # Who accessed what: one row per learner and course.
    assert {(r["student_id"], r["course"]): (r["first_access"], r["last_access"], int(r["launches"]))
            for r in learner_rows} == truth.learner_courses(start, end)
    assert all(r["student_name"] == f"Learner {r['student_id']}" for r in learner_rows)
    assert len({r["student_id"] for r in learner_rows}) == expected_users


def test_boundary_days_are_inclusive_and_utc(client, make_client):
    acme, key = make_client(name="Edges")
    from billing_helpers import Sent, Truth

    truth = Truth([
        Sent(dt.datetime(2026, 11, 1, 23, 59, 59, 999_000, tzinfo=dt.UTC), "late", "Late", "C", "launch"),
        Sent(dt.datetime(2026, 11, 2, 0, 0, 0, tzinfo=dt.UTC), "early", "Early", "C", "launch"),
        # 01:30 in UTC+2 is still the 2nd in UTC... and 23:30 UTC on the 2nd is the 3rd in UTC+2: UTC wins.
        Sent(dt.datetime(2026, 11, 3, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), "tz", "Tz", "C", "launch"),
    ])
    post_all(client, key, truth)
    session = db.session
    assert billing.unique_users(session, acme.id, dt.date(2026, 11, 1), dt.date(2026, 11, 1)) == 1
    assert billing.unique_users(session, acme.id, dt.date(2026, 11, 2), dt.date(2026, 11, 2)) == 2
    assert billing.unique_users(session, acme.id, dt.date(2026, 11, 1), dt.date(2026, 11, 2)) == 3
    assert billing.unique_users(session, acme.id, dt.date(2026, 11, 3), dt.date(2026, 11, 30)) == 0
    assert [d.day for d in billing.daily_totals(session, acme.id, dt.date(2026, 11, 1), dt.date(2026, 11, 30))] == [
        dt.date(2026, 11, 1), dt.date(2026, 11, 2)]


def test_default_range_is_licence_period_containing_today_else_month(client, login, make_client, make_staff):
    licensed, _ = make_client(name="Licensed", licence_start=dt.date(2026, 4, 1), licence_end=dt.date(2027, 3, 31))
    lapsed, _ = make_client(name="Lapsed", licence_start=dt.date(2025, 1, 1), licence_end=dt.date(2025, 12, 31))
    plain, _ = make_client(name="Plain")
    user = make_staff("billing")
    with time_machine.travel(TODAY, tick=False):
        login(user)
        # To date: never the future (today is the 20th).
        for client_row, expected in ((licensed, "2026-04-01 to 2026-11-20"), (lapsed, "2026-11-01 to 2026-11-20"),
                                     (plain, "2026-11-01 to 2026-11-20")):
            tree = page_tree(client.get(f"/billing/{client_row.slug}"))
            assert expected in tree.find_class("lead")[0].text_content()
            csv_response = client.get(f"/billing/{client_row.slug}/usage.csv")
            assert expected.replace(" to ", "-") in csv_response.headers["Content-Disposition"]


def test_completion_rate_and_milestones(client, login, make_client, make_staff):
    acme, key = make_client(name="Milestones")
    from billing_helpers import Sent, Truth

    truth = Truth([
        Sent(dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC), "a", "A", "Course 1", "launch"),
        Sent(dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC), "b", "B", "Course 1", "launch"),
        Sent(dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC), "a", "A", "Course 1", "completed"),
        Sent(dt.datetime(2026, 11, 4, 9, tzinfo=dt.UTC), "c", "C", "Course 2", "launch"),
        Sent(dt.datetime(2026, 11, 5, 9, tzinfo=dt.UTC), "a", "A", "Course 1", "passed"),
    ])
    post_all(client, key, truth)
    totals = {t.course: t for t in billing.course_totals(db.session, acme.id, dt.date(2026, 11, 1),
                                                         dt.date(2026, 11, 30))}
    assert totals["Course 1"].completion_rate == 0.5
    assert totals["Course 2"].completion_rate == 0
    stones = billing.milestones(db.session, acme.id)
    assert stones.first_enrolled == dt.date(2026, 11, 2)
    assert stones.first_completed == dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC)
    login(make_staff("billing"))
    tree = page_tree(client.get(f"/billing/{acme.slug}?from=2026-11-01&to=2026-11-30"))
    text = tree.text_content()
    assert "50.0 %" in text and "2026-11-02" in text and "2026-11-03" in text


def trend_column(tree) -> int:
    headers = [" ".join(th.text_content().split()) for th in tree.xpath('//table[@id="overview"]/thead/tr/th')]
    return headers.index("Trend")


def test_overview_figures_trend_and_forecast(client, login, make_client, make_staff):
    from billing_helpers import Sent, Truth

    from app.licensing import terms as licence_terms

    acme, key = make_client(name="Acme Overview")
    licence_terms.add_term(db.session, acme, actor="test", starts_on=dt.date(2026, 1, 1), ends_on=dt.date(2026, 12, 31),
                           seat_limit=4, seat_window="month")
    idle, _ = make_client(name="Idle")
    fresh, fresh_key = make_client(name="Fresh")
    post_all(client, fresh_key, Truth([Sent(dt.datetime(2026, 11, 4, 9, tzinfo=dt.UTC), "f", "F", "C", "launch")]))
    sends = [Sent(dt.datetime(2026, 10, 10, 9, tzinfo=dt.UTC), f"old-{i}", "Old", "C", "launch") for i in range(2)]
    sends += [Sent(dt.datetime(2026, 11, d, 9, tzinfo=dt.UTC), s, "New", "C", "launch")
              for d, s in ((2, "a"), (3, "a"), (5, "b"), (9, "c"))]
    post_all(client, key, Truth(sends))
    # 10 of 30 days gone, 3 new users: 3/10 a day, weighed with 7 days at October's 2/30 a day,
    # for 20 days more -> 7 (licences.forecast; a straight line would say 9).
    today = dt.date(2026, 11, 10)
    rows = {row.slug: row for row in billing.overview(db.session, today)}
    row = rows[acme.slug]
    assert (row.unique_users, row.previous_unique_users, row.forecast) == (3, 2, 7)
    assert row.seat_use == 0.75 and row.trend == 0.5
    assert (rows[idle.slug].unique_users, rows[idle.slug].trend, rows[idle.slug].seat_use) == (0, None, None)

    user = make_staff("csm")
    with time_machine.travel(dt.datetime(2026, 11, 10, 15, tzinfo=dt.UTC), tick=False):
        login(user)
        page = client.get("/billing/?sort=unique_users&dir=desc")
        csv_rows = read_csv(client.get("/billing/overview.csv"))
    tree = page_tree(page)
    names = [r.xpath("./td[1]/a")[0].text_content() for r in tree.xpath('//table[@id="overview"]/tbody/tr')]
    assert names == ["Acme Overview", "Fresh", "Idle"]
    trends = {r.xpath("./td[1]/a")[0].text_content(): " ".join(r.xpath("./td")[trend_column(tree)].text_content().split())
              for r in tree.xpath('//table[@id="overview"]/tbody/tr')}
    assert trends["Acme Overview"].startswith("+50") and trends["Fresh"] == "new (was 0)" and trends["Idle"] == "–"
    by_slug = {r["client"]: r for r in csv_rows}
    assert by_slug[acme.slug]["unique_users"] == "3"
    assert by_slug[acme.slug]["seat_use_percent"] == "75.0"
    assert by_slug[acme.slug]["trend_percent"] == "50.0"
    assert by_slug[acme.slug]["forecast_unique_users"] == "7"
    assert by_slug[idle.slug]["trend_percent"] == ""
