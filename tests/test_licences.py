"""Licence terms: the term in force, seat windows, renewal, enforcement, expiry, and the
forecast against ground truth on generated clients (growing and saturating)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Course, DailyUsage, Learner
from app.services import licences

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
    first = licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                              seat_limit=10)
    second = licences.renew_term(db.session, acme, first, actor="t", seat_limit=20)
    assert (second.starts_on, second.ends_on, second.seat_limit) == (D(2027, 1, 1), D(2027, 12, 31), 20)
    assert licences.term_in_force(db.session, acme.id, D(2026, 12, 31)).id == first.id
    assert licences.term_in_force(db.session, acme.id, D(2027, 1, 1)).id == second.id
    assert licences.term_in_force(db.session, acme.id, D(2028, 1, 1)) is None
    with pytest.raises(licences.LicenceError, match="overlaps"):
        licences.add_term(db.session, acme, actor="t", starts_on=D(2027, 6, 1), ends_on=D(2028, 5, 31),
                          seat_limit=5)
    with pytest.raises(licences.LicenceError, match="end on or after"):
        licences.add_term(db.session, acme, actor="t", starts_on=D(2030, 2, 1), ends_on=D(2030, 1, 1), seat_limit=5)
    assert len(licences.terms(db.session, acme.id)) == 2


def test_renewal_of_a_quarter_and_a_leap_year(acme):
    quarter = licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 10), ends_on=D(2026, 4, 9),
                                seat_limit=1)
    nxt = licences.renew_term(db.session, acme, quarter, actor="t")
    assert (nxt.starts_on, nxt.ends_on) == (D(2026, 4, 10), D(2026, 7, 9))
    leap = licences.add_term(db.session, acme, actor="t", starts_on=D(2027, 3, 1), ends_on=D(2028, 2, 29),
                             seat_limit=1)
    assert licences.renew_term(db.session, acme, leap, actor="t").ends_on == D(2029, 2, 28)


@pytest.mark.parametrize("window, day, expected", [
    ("term", D(2026, 3, 15), (D(2026, 2, 10), D(2027, 2, 9))),
    ("month", D(2026, 3, 15), (D(2026, 3, 1), D(2026, 3, 31))),
    ("month", D(2026, 2, 20), (D(2026, 2, 10), D(2026, 2, 28))),
    ("year", D(2026, 3, 15), (D(2026, 2, 10), D(2026, 12, 31))),
    ("year", D(2027, 1, 5), (D(2027, 1, 1), D(2027, 2, 9))),
])
def test_seat_windows_are_cut_to_the_term(acme, window, day, expected):
    term = licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 2, 10), ends_on=D(2027, 2, 9),
                             seat_limit=5, seat_window=window)
    got = licences.seat_window(term, day)
    assert (got.start, got.end) == expected


def test_monthly_counting_counts_a_learner_once_per_month(acme):
    term = licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
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
    licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
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
    licences.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 6, 30),
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
    last = licences.add_term(db.session, acme, actor="t", starts_on=D(2025, 1, 1), ends_on=D(2025, 12, 31),
                             seat_limit=1000)
    this = licences.renew_term(db.session, acme, last, actor="t")
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
