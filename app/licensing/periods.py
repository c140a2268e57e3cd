"""A client's billing period and the date ranges billing answers: the one home for both
(and so for the licence term in force and its seat window, which the period follows).

``current_period`` is the only definition of "this period" for a client: the
admin client list, the billing pages and overview, both CSVs and the usage API
all call it, so they cannot disagree. Ranges asked for are capped at
``MAX_RANGE_DAYS`` so no request can make the server count or draw centuries.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.exc import UnmappedInstanceError

from app.licensing.models import LicenceTerm

# Three years and a leap day: a multi-year licence or a year-on-year comparison fits,
# while a request can never make the server walk or chart centuries of days.
MAX_RANGE_DAYS = 3 * 365 + 1


class RangeError(ValueError):
    """A date range billing will not answer; the message is safe to show, ``field`` names the end at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Period:
    """UTC days, both ends inclusive."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - dt.timedelta(days=1)
        return Period(end - dt.timedelta(days=self.days - 1), end)

    def to_date(self, today: dt.date) -> Period:
        """The part of the period up to ``today`` (a period not begun yet is its first day)."""
        return Period(self.start, max(self.start, min(self.end, today)))


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def month_of(day: dt.date) -> Period:
    last = calendar.monthrange(day.year, day.month)[1]
    return Period(day.replace(day=1), day.replace(day=last))


def current_period(client, today: dt.date) -> Period:
    """The period a client's seat limit and invoice apply to on ``today``.

    The seat window of the licence term in force (the term, or its calendar
    month or year: ``licensing/licences.py``); without a term in force, the
    calendar month of today. Terms are the only home of a licence period.
    Whole periods: callers that must not show the future use ``Period.to_date``.
    """
    window = _licence_window(client, today)
    return window if window is not None else month_of(today)


def _licence_window(client, today: dt.date) -> Period | None:
    """The seat window of the client's licence term in force (issue 12), when it has one."""
    try:
        session = object_session(client)
    except UnmappedInstanceError:  # a plain object (tests, snapshots): no terms
        return None
    if session is None:
        return None
    return window_in_force(session, client.id, today)


# --- the term in force and its seat window (licences.py counts seats in it) -----------


def term_in_force(session: Session, client_id: int, day: dt.date) -> LicenceTerm | None:
    """The client's term covering ``day`` (terms never overlap), or None."""
    return session.scalar(select(LicenceTerm).where(
        LicenceTerm.client_id == client_id, LicenceTerm.starts_on <= day, LicenceTerm.ends_on >= day,
    ).order_by(LicenceTerm.starts_on.desc()).limit(1))


def seat_window(term: LicenceTerm, day: dt.date) -> Period:
    """The term's seat window holding ``day``: the term, or its calendar month or year, within the term."""
    if term.seat_window == "month":
        start, end = month_of(day).start, month_of(day).end
    elif term.seat_window == "year":
        start, end = dt.date(day.year, 1, 1), dt.date(day.year, 12, 31)
    else:
        start, end = term.starts_on, term.ends_on
    return Period(max(start, term.starts_on), min(end, term.ends_on))


def window_in_force(session: Session, client_id: int, day: dt.date) -> Period | None:
    """The seat window of the term in force on ``day`` (None without a term): what the one
    ``current_period`` of the product should return when a client has terms."""
    term = term_in_force(session, client_id, day)
    return seat_window(term, day) if term is not None else None


def checked_range(start: dt.date, end: dt.date) -> Period:
    """A range asked for, or RangeError saying why it is refused."""
    if start > end:
        raise RangeError("'from' must not be after 'to'", "from")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise RangeError(f"a range may span at most {MAX_RANGE_DAYS} days (three years)", "to")
    return Period(start, end)


def requested_range(client, start: dt.date | None, end: dt.date | None, today: dt.date) -> Period:
    """The range a page, CSV or the API answers: what was asked, the rest from the current period.

    Neither end given: the current period up to today (never the future). One
    end given: the other comes from the current period; the result is checked.
    """
    default = current_period(client, today)
    if start is None and end is None:
        return capped(default.to_date(today))
    return checked_range(start or default.start, end or default.end)


def capped(period: Period) -> Period:
    """A default range longer than the cap keeps its last MAX_RANGE_DAYS days."""
    if period.days <= MAX_RANGE_DAYS:
        return period
    return Period(period.end - dt.timedelta(days=MAX_RANGE_DAYS - 1), period.end)


# Ranges up to this many days are charted per day, up to WEEKLY_UP_TO per ISO week, longer per month.
DAILY_UP_TO = 92
WEEKLY_UP_TO = 400


def chart_unit(period: Period) -> str:
    if period.days <= DAILY_UP_TO:
        return "day"
    return "week" if period.days <= WEEKLY_UP_TO else "month"


def slices(period: Period, unit: str) -> list[Period]:
    """The range cut into days, ISO weeks (Monday first) or calendar months, the ends clipped to it."""
    result, day = [], period.start
    while day <= period.end:
        if unit == "day":
            last = day
        elif unit == "week":
            last = day + dt.timedelta(days=6 - day.weekday())
        else:
            last = month_of(day).end
        last = min(last, period.end)
        result.append(Period(day, last))
        day = last + dt.timedelta(days=1)
    return result
