"""Licences: how seats are counted, the decision at the seat limit, the forecast of seats at
the end of the window, and alert contacts. The terms themselves (add, change, renew) are in
``licence_terms.py``; which term is in force and its seat window in ``periods.py``.

Plain functions over a session; the admin, the CLI, the outbox worker and the
beacon/remote path all call these, so they agree.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app import audit
from app.clients.services import ClientSnapshot, stored_identity
from app.identity.student_ids import Pseudonymiser
from app.learners.merges import PERSON, with_people
from app.licensing.models import AlertContact, LicenceTerm

# A seat window is a period of UTC days. periods.py is its one home and also finds the term in
# force and its seat window: current_period needs them there, below this module.
from app.licensing.periods import Period as Window
from app.licensing.periods import seat_window, term_in_force
from app.licensing.terms import LicenceError, last_term_before
from app.models import Client, DailyUsage, Learner

# --- seat windows and counts ---------------------------------------------------------


def seats_used(session: Session, client_id: int, window: Window, until: dt.date | None = None) -> int:
    """Unique learners of the client in the window (up to ``until``, inclusive)."""
    end = min(window.end, until) if until else window.end
    return session.scalar(with_people(select(func.count(distinct(PERSON)))).where(
        DailyUsage.client_id == client_id, DailyUsage.day >= window.start, DailyUsage.day <= end)) or 0


def learner_counted(session: Session, client_id: int, identity: str, window: Window) -> bool:
    """Has this learner (stored identity), or an identity merged with it, already taken a seat in the window?"""
    person = select(func.coalesce(Learner.merged_into_id, Learner.id)).where(
        Learner.client_id == client_id, Learner.identity == identity).scalar_subquery()
    return session.scalar(with_people(select(DailyUsage.id)).where(
        DailyUsage.client_id == client_id, PERSON == person,
        DailyUsage.day >= window.start, DailyUsage.day <= window.end).limit(1)) is not None


def range_seat_window(session: Session, client_id: int, period: Window) -> tuple[LicenceTerm, Window] | None:
    """The term and seat window a range of days is (from the window's first day to a day within it:
    the window, or the window to date), or None. Only then are the range's unique learners its seats
    used; any other range (before the term, across windows, a part) is no seat figure."""
    term = term_in_force(session, client_id, period.start)
    if term is None:
        return None
    window = seat_window(term, period.start)
    if window.start == period.start and period.end <= window.end:
        return term, window
    return None


# --- enforcement -------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchDecision:
    """What to do with a launch. ``allowed`` false only for a new learner of a remote package."""

    allowed: bool
    over_limit: bool
    reason: str  # "no_term" | "within_limit" | "returning" | "over_limit" | "expired"


def launch_decision(session: Session, client_id: int, identity: str, day: dt.date, *,
                    remote: bool) -> LaunchDecision:
    """Record-and-flag or block, per the term in force (or the last one, once expired).

    A learner already counted is never refused (their launch is never lost);
    a deployed package cannot be blocked, only flagged.
    """
    term = term_in_force(session, client_id, day)
    if term is None:
        expired = last_term_before(session, client_id, day)
        if expired is None:
            return LaunchDecision(True, False, "no_term")
        # After the last term: a learner of the last term's final window still returns.
        if learner_counted(session, client_id, identity, seat_window(expired, expired.ends_on)):
            return LaunchDecision(True, True, "returning")
        return LaunchDecision(not (remote and expired.after_expiry == "block"), True, "expired")
    if term.seat_limit is None:
        return LaunchDecision(True, False, "within_limit")
    window = seat_window(term, day)
    if learner_counted(session, client_id, identity, window):
        return LaunchDecision(True, False, "returning")
    if seats_used(session, client_id, window) < term.seat_limit:
        return LaunchDecision(True, False, "within_limit")
    return LaunchDecision(not (remote and term.at_limit == "block"), True, "over_limit")


def blocks_new_learners(session: Session, client_id: int, day: dt.date) -> bool:
    """Is the policy in force on ``day`` one that can refuse a new learner (of a remote package)?

    A term in force that blocks at its limit, or no term in force after a last term that
    blocks after expiry. Such a client's remote content opens only with a seat grant, and a
    new learner's seat is taken only by a beacon carrying one (see ``seat_grants``).
    """
    term = term_in_force(session, client_id, day)
    if term is not None:
        return term.at_limit == "block" and term.seat_limit is not None
    expired = last_term_before(session, client_id, day)
    return expired is not None and expired.after_expiry == "block"


def new_learners_admitted(session: Session, client_id: int, day: dt.date) -> bool:
    """Would a new learner be let in on ``day``? Answered without looking at who asks, so an
    answer under the limit tells nothing about who is a learner already."""
    term = term_in_force(session, client_id, day)
    if term is None:
        expired = last_term_before(session, client_id, day)
        return expired is None or expired.after_expiry != "block"
    if term.seat_limit is None or term.at_limit != "block":
        return True
    return seats_used(session, client_id, seat_window(term, day)) < term.seat_limit


# --- forecast ----------------------------------------------------------------------


RECENT_DAYS = 14
PRIOR_DAYS = 7
Z_90 = 1.645


@dataclass(frozen=True)
class Forecast:
    """Seats expected at the end of the window, with a 90 % range and a plain statement."""

    used: int
    expected: int
    low: int
    high: int
    limit: int | None
    statement: str

    @property
    def sureness(self) -> str:
        """How sure, in a word or two for a table cell or card ("" when the statement says none)."""
        for phrase, said in (("has ended", "final"), ("not started", "not started"),
                             ("not sure yet", "not sure yet"), ("fairly sure", "fairly sure")):
            if phrase in self.statement:
                return said
        return ""

    @property
    def over_limit(self) -> bool:
        """Likely over: the expected figure passes the limit."""
        return self.limit is not None and self.expected > self.limit


def _new_learners_by_day(session: Session, client_id: int, window: Window, until: dt.date) -> dict[dt.date, int]:
    firsts = (with_people(select(PERSON.label("person"), func.min(DailyUsage.day).label("first_day")))
              .where(DailyUsage.client_id == client_id, DailyUsage.day >= window.start,
                     DailyUsage.day <= min(until, window.end))
              .group_by(PERSON).subquery())
    rows = session.execute(select(firsts.c.first_day, func.count()).group_by(firsts.c.first_day))
    return {day: count for day, count in rows}


def forecast(session: Session, client_id: int, window: Window, today: dt.date, limit: int | None,
             last_year: Window | None = None) -> Forecast:
    """From the arrival rate of new learners in the window (recent days weigh: a saturating
    client slows down), and, where there is one, the same window last year.

    New learners arrive as a Poisson process; the range adds the rate's own
    uncertainty (few arrivals, wide range).
    """
    arrivals = _new_learners_by_day(session, client_id, window, today)
    used = sum(arrivals.values())
    if today >= window.end:
        return Forecast(used, used, used, used, limit, "The window has ended: this is the final figure.")
    if today < window.start:
        return Forecast(0, 0, 0, 0, limit, "The window has not started.")
    elapsed = (today - window.start).days + 1
    remaining = window.days - elapsed
    recent_days = min(RECENT_DAYS, elapsed)
    recent_start = today - dt.timedelta(days=recent_days - 1)
    recent = sum(n for day, n in arrivals.items() if day >= recent_start)
    rate = recent / recent_days
    if elapsed < RECENT_DAYS:
        # Little data: one busy first day is a cohort, not a rate. Weigh in PRIOR_DAYS at
        # the rate of the window before (none: no arrivals), so 10 learners on day 1 of a
        # month forecast tens, not 310.
        before = Window(window.start - dt.timedelta(days=window.days), window.start - dt.timedelta(days=1))
        prior_rate = seats_used(session, client_id, before) / before.days
        rate = (recent + prior_rate * PRIOR_DAYS) / (recent_days + PRIOR_DAYS)
        basis_prior = (f", weighed with {PRIOR_DAYS} days at the {prior_rate:.1f} a day of the "
                       f"{before.days} days before the window" if prior_rate else
                       f", weighed with {PRIOR_DAYS} days of none (no learners in the {before.days} days before "
                       "the window)")
    else:
        basis_prior = ""
    future = rate * remaining
    variance = future + (remaining ** 2) * recent / (recent_days ** 2)
    basis = f"{recent} new learner(s) in the last {recent_days} day(s)" + basis_prior

    # A saturating client: clearly fewer arrivals in the second half of the days so far
    # than in the first. Arrivals then fall off geometrically at the observed pace.
    half = elapsed // 2
    if half >= 7:
        middle = today - dt.timedelta(days=half - 1)
        first = sum(n for day, n in arrivals.items() if middle - dt.timedelta(days=half) <= day < middle)
        second = sum(n for day, n in arrivals.items() if day >= middle)
        if first - second > 2 * math.sqrt(first + second):
            per_day = ((second + 0.5) / first) ** (1 / half)
            future = rate * per_day * (1 - per_day ** remaining) / (1 - per_day)
            variance = future + future ** 2 / max(recent, 1)
            basis += f", slowing down ({first} then {second} over two spans of {half} days)"
    expected = used + future

    if last_year is not None:
        before = seats_used(session, client_id, last_year,
                            until=last_year.start + dt.timedelta(days=elapsed - 1))
        final = seats_used(session, client_id, last_year)
        if before and final:
            by_last_year = used * final / before
            expected = (expected + by_last_year) / 2
            variance = variance / 2 + ((by_last_year - expected) ** 2)
            basis += f"; last year the same window grew {final / before:.2f}× from this point"
    spread = Z_90 * math.sqrt(variance)
    low, high = max(used, math.floor(expected - spread)), math.ceil(expected + spread)
    expected_int = round(expected)
    sure = "fairly sure" if elapsed >= 14 and recent >= 10 else "not sure yet (little data)"
    statement = (f"Expected {expected_int} seat(s) by {window.end.isoformat()}, 90 % likely between {low} and "
                 f"{high}; {sure}. Based on {basis}.")
    return Forecast(used, expected_int, low, high, limit, statement)


def term_forecast(session: Session, client_id: int, term: LicenceTerm, today: dt.date) -> Forecast:
    window = seat_window(term, today)
    last_year = None
    earlier = last_term_before(session, client_id, term.starts_on)
    if earlier is not None:
        try:
            start = window.start.replace(year=window.start.year - 1)
            end = window.end.replace(year=window.end.year - 1)
        except ValueError:  # 29 February
            start, end = window.start - dt.timedelta(days=365), window.end - dt.timedelta(days=365)
        if earlier.starts_on <= start:
            last_year = Window(start, end)
    return forecast(session, client_id, window, today, term.seat_limit, last_year)


# --- alert contacts ----------------------------------------------------------------


def contacts(session: Session, client_id: int) -> list[str]:
    return list(session.scalars(select(AlertContact.email).where(AlertContact.client_id == client_id)
                                .order_by(AlertContact.email)))


def _checked_email(raw: str) -> str:
    email = raw.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or any(c.isspace() or c in "<>,;\"" for c in email) or len(email) > 255:
        raise LicenceError(f"{raw!r} is not an e-mail address")
    return email


def set_contacts(session: Session, client: Client, emails: list[str], *, actor: str, commit: bool = True) -> list[str]:
    """Replace the client's alert contacts (audited)."""
    wanted = sorted({_checked_email(e) for e in emails if e.strip()})
    before = contacts(session, client.id)
    if wanted != before:
        for row in session.scalars(select(AlertContact).where(AlertContact.client_id == client.id)):
            if row.email not in wanted:
                session.delete(row)
        for email in set(wanted) - set(before):
            session.add(AlertContact(client_id=client.id, email=email))
        audit.record(session, actor, "licence.contacts", client.id, {"alert_emails": before},
                     {"alert_emails": wanted})
    if commit:
        session.commit()
    return wanted


# --- the remote launcher's question -------------------------------------------------


LIMIT_PAGE_TEMPLATE = "content/licence_limit.html"


def remote_launch_decision(session: Session, client_id: int, identity: str, day: dt.date) -> LaunchDecision:
    """For a remote package, before its launcher opens the course: ``allowed`` false means the
    learner sees the polite "licence limit reached" page instead, and nothing is recorded.
    ``identity`` is the stored identity (the pseudonym for anonymised clients)."""
    return launch_decision(session, client_id, identity, day, remote=True)


def remote_launch_for_student(session: Session, pseudonymiser: Pseudonymiser, client: ClientSnapshot,
                              student_id: str, day: dt.date) -> LaunchDecision:
    """``remote_launch_decision`` for a normalised student ID as the LMS gave it.

    A verbatim client that was anonymised before may hold this learner under their
    pseudonym (linked at their next beacon): counted either way, never refused.
    """
    decision = remote_launch_decision(session, client.id, stored_identity(pseudonymiser, client, student_id), day)
    if not decision.allowed and client.links_pseudonyms and client.pseudonym_key is not None:
        linked = remote_launch_decision(session, client.id, pseudonymiser.pseudonym(client.pseudonym_key, student_id),
                                        day)
        if linked.allowed:
            return linked
    return decision
