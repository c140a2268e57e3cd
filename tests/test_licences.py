"""Licence terms: the term in force, seat windows, renewal, enforcement, expiry, and the
forecast against ground truth on generated clients (growing and saturating)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from sqlalchemy import select

from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.models import Course, DailyUsage, Learner

D = dt.date


def _use(client_id, learner, day, course_id):
    row = db.session.scalar(select(Learner).where(Learner.client_id == client_id, Learner.identity == learner))
    if row is None:
        row = Learner(client_id=client_id, identity=learner, name=learner)
        db.session.add(row)
        db.session.flush()
    db.session.add(DailyUsage(client_id=client_id, course_id=course_id, learner_id=row.id, day=day, launches=1))


@pytest.fixture
def acme(make_client):
    client, _ = make_client(name="Acme")
    course = Course(client_id=client.id, title="Fire Safety")
    db.session.add(course)
    db.session.commit()
    client.course_id = course.id
    return client


def test_term_in_force_and_no_overlap(acme):
    first = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                                   seat_limit=10)
    second = licence_terms.renew_term(db.session, acme, first, actor="t", seat_limit=20)
    assert (second.starts_on, second.ends_on, second.seat_limit) == (D(2027, 1, 1), D(2027, 12, 31), 20)
    assert licences.term_in_force(db.session, acme.id, D(2026, 12, 31)).id == first.id
    assert licences.term_in_force(db.session, acme.id, D(2027, 1, 1)).id == second.id
    assert licences.term_in_force(db.session, acme.id, D(2028, 1, 1)) is None
    with pytest.raises(licences.LicenceError, match="overlaps"):
        licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2027, 6, 1), ends_on=D(2028, 5, 31),
                               seat_limit=5)
    with pytest.raises(licences.LicenceError, match="end on or after"):
        licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2030, 2, 1), ends_on=D(2030, 1, 1), seat_limit=5)
    assert len(licence_terms.terms(db.session, acme.id)) == 2


def test_renewal_of_a_quarter_and_a_leap_year(acme):
    quarter = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 10), ends_on=D(2026, 4, 9),
                                     seat_limit=1)
    nxt = licence_terms.renew_term(db.session, acme, quarter, actor="t")
    assert (nxt.starts_on, nxt.ends_on) == (D(2026, 4, 10), D(2026, 7, 9))
    leap = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2027, 3, 1), ends_on=D(2028, 2, 29),
                                  seat_limit=1)
    assert licence_terms.renew_term(db.session, acme, leap, actor="t").ends_on == D(2029, 2, 28)


@pytest.mark.parametrize("window, day, expected", [
    ("term", D(2026, 3, 15), (D(2026, 2, 10), D(2027, 2, 9))),
    ("month", D(2026, 3, 15), (D(2026, 3, 1), D(2026, 3, 31))),
    ("month", D(2026, 2, 20), (D(2026, 2, 10), D(2026, 2, 28))),
    ("year", D(2026, 3, 15), (D(2026, 2, 10), D(2026, 12, 31))),
    ("year", D(2027, 1, 5), (D(2027, 1, 1), D(2027, 2, 9))),
])
def test_seat_windows_are_cut_to_the_term(acme, window, day, expected):
    term = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 2, 10), ends_on=D(2027, 2, 9),
                                  seat_limit=5, seat_window=window)
    got = licences.seat_window(term, day)
    assert (got.start, got.end) == expected


def test_monthly_counting_counts_a_learner_once_per_month(acme):
    term = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                                  seat_limit=5, seat_window="month")
    for day in (D(2026, 1, 3), D(2026, 1, 20), D(2026, 2, 2)):
        _use(acme.id, "ann", day, acme.course_id)
    _use(acme.id, "bob", D(2026, 1, 9), acme.course_id)
    db.session.commit()
    assert licences.seats_used(db.session, acme.id, licences.seat_window(term, D(2026, 1, 31))) == 2
    assert licences.seats_used(db.session, acme.id, licences.seat_window(term, D(2026, 2, 5))) == 1
    year = licences.Window(term.starts_on, term.ends_on)
    assert licences.seats_used(db.session, acme.id, year) == 2


@pytest.mark.parametrize("at_limit, remote, allowed", [
    ("record", True, True), ("record", False, True), ("block", False, True), ("block", True, False),
])
def test_enforcement_at_the_limit(acme, at_limit, remote, allowed):
    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                           seat_limit=2, at_limit=at_limit)
    _use(acme.id, "ann", D(2026, 3, 1), acme.course_id)
    assert licences.launch_decision(db.session, acme.id, "bob", D(2026, 3, 2), remote=True).allowed
    _use(acme.id, "bob", D(2026, 3, 2), acme.course_id)
    db.session.commit()
    new = licences.launch_decision(db.session, acme.id, "cat", D(2026, 3, 3), remote=remote)
    assert (new.allowed, new.over_limit, new.reason) == (allowed, True, "over_limit")
    returning = licences.launch_decision(db.session, acme.id, "ann", D(2026, 3, 3), remote=True)
    assert returning.allowed and returning.reason == "returning", "a counted learner is never refused"


@pytest.mark.parametrize("after_expiry, allowed_new", [("record", True), ("block", False)])
def test_expired_term(acme, after_expiry, allowed_new):
    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 6, 30),
                           seat_limit=100, after_expiry=after_expiry)
    _use(acme.id, "ann", D(2026, 6, 1), acme.course_id)
    db.session.commit()
    new = licences.launch_decision(db.session, acme.id, "bob", D(2026, 7, 5), remote=True)
    assert (new.allowed, new.over_limit, new.reason) == (allowed_new, True, "expired")
    deployed = licences.launch_decision(db.session, acme.id, "bob", D(2026, 7, 5), remote=False)
    assert deployed.allowed and deployed.over_limit, "deployed packages cannot be blocked, only flagged"
    assert licences.launch_decision(db.session, acme.id, "ann", D(2026, 7, 5), remote=True).allowed
    assert licences.launch_decision(db.session, acme.id, "x", D(2025, 12, 1), remote=True).reason == "no_term"


def _generate(client, start, days, arrivals_on_day, seed):
    """Learners' first days from ``arrivals_on_day(d)`` (Poisson); returns first-day counts per day."""
    rng = random.Random(seed)
    firsts = []
    for d in range(days):
        lam = arrivals_on_day(d)
        # Poisson by inversion (small rates).
        n, p, u = 0, math.exp(-lam), rng.random()
        cumulative = p
        while u > cumulative and n < 1000:
            n += 1
            p *= lam / n
            cumulative += p
        firsts.append(n)
    return firsts


@pytest.mark.parametrize("kind", ["growing", "saturating"])
def test_forecast_against_ground_truth(acme, kind):
    start, days, today_index = D(2026, 1, 1), 180, 59
    if kind == "growing":
        arrivals = lambda d: 3 + d * 0.02  # noqa: E731
    else:
        arrivals = lambda d: 40 * math.exp(-d / 10)  # noqa: E731  (about 400 learners, nearly all by day 40)
    firsts = _generate(acme, start, days, arrivals, seed=12)
    truth = sum(firsts)
    learner = 0
    for d, n in enumerate(firsts[: today_index + 1]):
        for _ in range(n):
            learner += 1
            _use(acme.id, f"l{learner}", start + dt.timedelta(days=d), acme.course_id)
    db.session.commit()
    window = licences.Window(start, start + dt.timedelta(days=days - 1))
    today = start + dt.timedelta(days=today_index)
    outlook = licences.forecast(db.session, acme.id, window, today, limit=None)
    naive = round(outlook.used * days / (today_index + 1))
    assert outlook.low <= truth <= outlook.high, (outlook, truth)
    assert abs(outlook.expected - truth) <= 0.15 * truth, (outlook, truth)
    assert abs(outlook.expected - truth) < abs(naive - truth) or kind == "growing"
    assert "90 % likely between" in outlook.statement


def test_forecast_uses_last_years_term(acme):
    """Last year the client grew 2x in the second half; this year's early rate alone would miss it."""
    last = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2025, 1, 1), ends_on=D(2025, 12, 31),
                                  seat_limit=1000)
    this = licence_terms.renew_term(db.session, acme, last, actor="t")
    for year in (2025, 2026):
        for i in range(100):
            _use(acme.id, f"{year}-{i}", D(year, 1, 1) + dt.timedelta(days=i % 180), acme.course_id)
    for i in range(100, 200):
        _use(acme.id, f"2025-{i}", D(2025, 7, 1) + dt.timedelta(days=i % 180), acme.course_id)
    db.session.commit()
    outlook = licences.term_forecast(db.session, acme.id, this, D(2026, 6, 29))
    assert "last year" in outlook.statement
    without = licences.forecast(db.session, acme.id, licences.seat_window(this, D(2026, 6, 29)), D(2026, 6, 29), 1000)
    assert outlook.expected > without.expected


def test_admin_licence_page_adds_a_term_sets_contacts_and_renews(acme, client, make_staff, login):
    from conftest import csrf_token_from

    login(make_staff("csm"))
    url = f"/admin/clients/{acme.slug}/licence"
    page = client.get(url)
    assert page.status_code == 200 and "No licence term is in force" in page.get_data(as_text=True)
    token = csrf_token_from(page.get_data(as_text=True))
    referer = {"Referer": "https://localhost" + url}
    today = dt.datetime.now(dt.UTC).date()
    bad = client.post(url, data={"csrf_token": token, "term-starts_on": today.isoformat(),
                                 "term-ends_on": (today - dt.timedelta(days=1)).isoformat()}, headers=referer)
    assert bad.status_code == 400 and "must end on or after" in bad.get_data(as_text=True)
    assert licence_terms.terms(db.session, acme.id) == []
    added = client.post(url, data={"csrf_token": token, "term-starts_on": today.isoformat(),
                                   "term-ends_on": (today + dt.timedelta(days=99)).isoformat(),
                                   "term-seat_limit": "25", "term-seat_window": "term",
                                   "term-at_limit": "block", "term-after_expiry": "record"}, headers=referer)
    assert added.status_code == 302
    html = client.get(url).get_data(as_text=True)
    assert "/ 25" in html and "block new learners" in html and "90 % likely between" in html
    refused = client.post(f"{url}/contacts", headers=referer,
                          data={"csrf_token": token, "contacts-alert_emails": "A@Acme.example\nnot-an-address"})
    assert refused.status_code == 400 and "Nothing changed" in refused.get_data(as_text=True)
    assert licences.contacts(db.session, acme.id) == [], "a bad address changes nothing"
    client.post(f"{url}/contacts", data={"csrf_token": token, "contacts-alert_emails": "A@Acme.example\nb@acme.example"},
                headers=referer)
    assert licences.contacts(db.session, acme.id) == ["a@acme.example", "b@acme.example"]
    assert client.post(f"{url}/renew", data={}, headers=referer).status_code == 400
    client.post(f"{url}/renew", data={"csrf_token": token}, headers=referer)
    db.session.expire_all()
    assert [t.starts_on for t in licence_terms.terms(db.session, acme.id)] == [today, today + dt.timedelta(days=100)]


def test_cli_client_create_with_alert_emails_and_terms(app, runner):
    import json

    made = runner.invoke(args=["client", "create", "--name", "Delta", "--alert-email", "Ops@Delta.example",
                               "--alert-email", "cs@delta.example", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["alert_emails"] == ["cs@delta.example", "ops@delta.example"]
    bad = runner.invoke(args=["licence", "add-term", "--client", "delta", "--start", "2026-02-01",
                              "--end", "2026-01-01"])
    assert bad.exit_code != 0 and "end on or after" in bad.output
    ok = runner.invoke(args=["licence", "add-term", "--client", "delta", "--start", "2026-01-01",
                             "--end", "2026-12-31", "--seat-limit", "5", "--count-per", "month", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["seat_window"] == "month"
    renewed = json.loads(runner.invoke(args=["licence", "renew", "--client", "delta", "--json"]).output)
    assert (renewed["starts_on"], renewed["ends_on"]) == ("2027-01-01", "2027-12-31")


def test_ten_learners_on_day_one_are_not_forecast_at_310(acme):
    for i in range(10):
        _use(acme.id, f"d1-{i}", D(2026, 3, 1), acme.course_id)
    db.session.commit()
    outlook = licences.forecast(db.session, acme.id, licences.Window(D(2026, 3, 1), D(2026, 3, 31)), D(2026, 3, 1),
                                limit=None)
    assert outlook.expected < 60 and "not sure yet" in outlook.statement


def test_billing_overview_and_period_use_the_term_in_force(acme):
    from app.billing import figures as billing
    from app.licensing import periods

    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                           seat_limit=7, seat_window="month")
    for i in range(3):
        _use(acme.id, f"m-{i}", D(2026, 3, 2 + i), acme.course_id)
    _use(acme.id, "feb", D(2026, 2, 20), acme.course_id)
    db.session.commit()
    assert periods.current_period(acme, D(2026, 3, 10)) == periods.Period(D(2026, 3, 1), D(2026, 3, 31))
    [row] = [r for r in billing.overview(db.session, D(2026, 3, 10)) if r.slug == acme.slug]
    assert (row.seat_limit, row.unique_users, row.period.start) == (7, 3, D(2026, 3, 1))
    assert periods.current_period(acme, D(2027, 3, 10)) == periods.month_of(D(2027, 3, 10)), "after the term"


def test_remote_hook_and_its_polite_page(app, acme):
    from flask import render_template

    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                           seat_limit=1, at_limit="block")
    _use(acme.id, "ann", D(2026, 3, 1), acme.course_id)
    db.session.commit()
    assert not licences.remote_launch_decision(db.session, acme.id, "bob", D(2026, 3, 2)).allowed
    assert licences.remote_launch_decision(db.session, acme.id, "ann", D(2026, 3, 2)).allowed
    with app.test_request_context("/"):
        html = render_template(licences.LIMIT_PAGE_TEMPLATE, client_name="Acme")
    assert "Licence limit reached" in html and "Acme has used every seat" in html
