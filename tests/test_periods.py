"""One definition of a client's period: every page, CSV and the API agree with licensing.periods.

If any face computed a period its own way (the admin and billing once disagreed on open-ended
licences), one of the clients below would show a different period there.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import time_machine
from billing_helpers import page_tree, read_csv

from app.extensions import db
from app.licensing import periods
from app.staff import services as staff_service

TODAY = dt.date(2026, 12, 1)
LICENCES = {
    "Whole year": dict(licence_start=dt.date(2026, 4, 1), licence_end=dt.date(2027, 3, 31)),
    "Open ended": dict(licence_start=dt.date(2026, 12, 1)),
    "Lapsed": dict(licence_start=dt.date(2025, 1, 1), licence_end=dt.date(2025, 12, 31)),
    "Not begun": dict(licence_start=dt.date(2027, 1, 1), licence_end=dt.date(2027, 12, 31)),
    "No dates": {},
    "Five years": dict(licence_start=dt.date(2023, 1, 1), licence_end=dt.date(2027, 12, 31)),
}


def test_current_period_rules(clients):
    """Terms are the only licence period: the seat window of the term in force, else the month."""
    month = periods.Period(dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    expected = {"Whole year": periods.Period(dt.date(2026, 4, 1), dt.date(2027, 3, 31)),
                # --licence-start alone: a term of one year from that day.
                "Open ended": periods.Period(dt.date(2026, 12, 1), dt.date(2027, 11, 30)),
                "Lapsed": month, "Not begun": month, "No dates": month,
                "Five years": periods.Period(dt.date(2023, 1, 1), dt.date(2027, 12, 31))}
    assert {name: periods.current_period(row, TODAY) for name, row in clients.items()} == expected
    assert month.to_date(TODAY) == periods.Period(TODAY, TODAY)


def test_no_face_defines_a_period_of_its_own():
    """The only definitions live in licensing/periods.py; a twin anywhere else fails here."""
    app_dir = Path(__file__).resolve().parent.parent / "app"
    twins = []
    for path in app_dir.rglob("*.py"):
        if path.name == "periods.py":
            continue
        text = path.read_text()
        if re.search(r"def (current_period|month_of|requested_range|checked_range)\b|class Period\b"
                     r"|monthrange|replace\(day=1\)", text):
            twins.append(str(path.relative_to(app_dir)))
    assert twins == []


@pytest.fixture
def clients(make_client):
    return {name: make_client(name=name, **licence)[0] for name, licence in LICENCES.items()}


def test_every_face_shows_the_same_period(client, login, make_staff, clients):
    user = make_staff("admin")
    token = staff_service.create_token(db.session, user, actor="test")
    with time_machine.travel(dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC), tick=False):
        login(user)
        admin_list = client.get("/admin/").get_data(as_text=True)
        overview = page_tree(client.get("/billing/"))
        overview_csv = {r["client"]: r for r in read_csv(client.get("/billing/overview.csv"))}
        for name, row in clients.items():
            expected = periods.current_period(row, TODAY)
            shown = periods.capped(expected.to_date(TODAY))
            span = f"{expected.start.isoformat()} – {expected.end.isoformat()}"
            # Admin: the client list and the client's page.
            assert span in admin_list.split(f">{name}</a>")[1].split("</tr>")[0], name
            assert span in client.get(f"/admin/clients/{row.slug}").get_data(as_text=True), name
            # Billing overview page and CSV.
            cells = overview.xpath(f'//tr[@data-slug="{row.slug}"]')[0].text_content()
            assert expected.start.isoformat() in cells and expected.end.isoformat() in cells, name
            assert (overview_csv[row.slug]["period_start"], overview_csv[row.slug]["period_end"]) == (
                expected.start.isoformat(), expected.end.isoformat())
            # The client's billing page, both CSVs and the learner list default to that period to date.
            lead = page_tree(client.get(f"/billing/{row.slug}")).find_class("lead")[0].text_content()
            assert f"{shown.start.isoformat()} to {shown.end.isoformat()}" in lead, name
            for csv_name in ("usage", "learners"):
                disposition = client.get(f"/billing/{row.slug}/{csv_name}.csv").headers["Content-Disposition"]
                assert f"{shown.start.isoformat()}-{shown.end.isoformat()}.csv" in disposition, name
            learners = page_tree(client.get(f"/billing/{row.slug}/learners")).find_class("lead")[0]
            assert f"{shown.start.isoformat()} to {shown.end.isoformat()}" in learners.text_content(), name
            # The API answers exactly the range asked, with the same cap.
            api = client.get(f"/api/v1/clients/{row.slug}/usage?from={shown.start}&to={shown.end}",
                             headers={"Authorization": f"Bearer {token}"}).get_json()
            assert (api["from"], api["to"]) == (shown.start.isoformat(), shown.end.isoformat())
    five = clients["Five years"]
    assert periods.capped(periods.current_period(five, TODAY).to_date(TODAY)).days == periods.MAX_RANGE_DAYS


@pytest.mark.parametrize("query", ["from=0001-01-01", "from=2020-01-01&to=2026-12-01", "to=9999-12-31",
                                   "from=2026-12-05&to=2026-12-01"])
def test_huge_open_ended_or_reversed_ranges_are_refused_everywhere(client, login, make_staff, clients, query):
    user = make_staff("billing")
    token = staff_service.create_token(db.session, user, actor="test")
    login(user)
    slug = clients["No dates"].slug
    page = client.get(f"/billing/{slug}?{query}")
    assert page.status_code == 400
    tree = page_tree_any(page)
    assert tree.get_element_by_id("range-error").text_content().startswith("Not shown:")
    assert tree.xpath('//form[@class="range"]'), "back to the form"
    for url in (f"/billing/{slug}/usage.csv?{query}", f"/billing/{slug}/learners.csv?{query}",
                f"/billing/{slug}/learners?{query}"):
        assert client.get(url).status_code == 400, url
    if "from=" in query and "to=" in query:
        api = client.get(f"/api/v1/clients/{slug}/usage?{query}", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 400 and api.json["error"] == "invalid_query"


def page_tree_any(response):
    import lxml.html

    return lxml.html.fromstring(response.get_data(as_text=True))


def test_long_ranges_are_charted_per_week_or_month(client, login, make_client, make_staff):
    from billing_helpers import Sent, Truth, post_all

    acme, key = make_client(name="Charted")
    at = [dt.datetime(2026, 11, d, 9, tzinfo=dt.UTC) for d in (2, 3, 4)]
    post_all(client, key, Truth([Sent(at[0], "a", "A", "C", "launch"), Sent(at[1], "a", "A", "C", "launch"),
                                 Sent(at[2], "b", "B", "C", "launch")]))
    user = make_staff("billing")
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC), tick=False):
        login(user)
        for query, unit, bars, tip in (
                ("from=2026-11-01&to=2026-11-30", "day", 30, "2026-11-03: 1 unique users, 1 launches"),
                ("from=2026-01-05&to=2026-12-01", "week", 48, "2026-11-02 to 2026-11-08: 2 unique users, 3 launches"),
                ("from=2024-01-01&to=2026-11-30", "month", 35, "2026-11-01 to 2026-11-30: 2 unique users, 3 launches")):
            html = client.get(f"/billing/{acme.slug}?{query}").get_data(as_text=True)
            assert f"Unique users and launches per {unit}" in html
            # Each drawing (wide, and the phone's narrow one) has a bar per slice, plus the legend's swatch.
            drawings = html.split('<svg class="chart')[1:]
            assert len(drawings) == 2, unit
            for drawing in drawings:
                assert drawing.count('<rect class="bar" x=') - 1 == bars, (unit, drawing[:12])
            assert f"<title>{tip}</title>" in html, unit
            start, end = (dt.date.fromisoformat(part.split("=")[1]) for part in query.split("&"))
            parts = periods.slices(periods.Period(start, end), unit)
            assert parts[0].start == start and parts[-1].end == end
            assert all(b.start == a.end + dt.timedelta(days=1) for a, b in zip(parts, parts[1:], strict=False))
