"""Licence terms of a client: add, change, remove and renew them (audited; terms never overlap).

Licensing builds on clients: a new client with its first term is made here
(``create_client_with_term``), so the clients domain never imports licensing.
Which term is in force on a day and its seat window are periods: ``licensing/periods.py``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit
from app.clients.services import ClientError, create_client
from app.identity.student_ids import PseudonymParams
from app.licensing.models import AT_LIMIT, SEAT_WINDOWS, LicenceTerm
from app.licensing.periods import month_of
from app.models import Client, utcnow


class LicenceError(ValueError):
    """A licence term or contact the CSM must correct; the message says what."""


# --- terms ------------------------------------------------------------------------


def terms(session: Session, client_id: int) -> list[LicenceTerm]:
    return list(session.scalars(select(LicenceTerm).where(LicenceTerm.client_id == client_id)
                                .order_by(LicenceTerm.starts_on)))


def last_term_before(session: Session, client_id: int, day: dt.date) -> LicenceTerm | None:
    return session.scalar(select(LicenceTerm).where(
        LicenceTerm.client_id == client_id, LicenceTerm.ends_on < day,
    ).order_by(LicenceTerm.ends_on.desc()).limit(1))


def add_term(session: Session, client: Client, *, actor: str, starts_on: dt.date, ends_on: dt.date,
             seat_limit: int | None, seat_window: str = "term", at_limit: str = "record",
             after_expiry: str = "record", commit: bool = True) -> LicenceTerm:
    """Add a term (audited, commits unless told not to). Terms of one client never overlap."""
    _check_term(session, client.id, starts_on, ends_on, seat_limit, seat_window, at_limit, after_expiry)
    term = LicenceTerm(client_id=client.id, starts_on=starts_on, ends_on=ends_on, seat_limit=seat_limit,
                       seat_window=seat_window, at_limit=at_limit, after_expiry=after_expiry)
    session.add(term)
    session.flush()
    audit.record(session, actor, "licence.term_add", client.id, None, term.as_dict())
    if commit:
        session.commit()
    return term


def _check_term(session: Session, client_id: int, starts_on: dt.date, ends_on: dt.date, seat_limit: int | None,
                seat_window: str, at_limit: str, after_expiry: str, ignore: int | None = None) -> None:
    if ends_on < starts_on:
        raise LicenceError("a term must end on or after the day it starts")
    if seat_limit is not None and seat_limit < 0:
        raise LicenceError("the seat limit cannot be negative")
    if seat_window not in SEAT_WINDOWS:
        raise LicenceError(f"seats are counted per {', '.join(SEAT_WINDOWS)}")
    if at_limit not in AT_LIMIT or after_expiry not in AT_LIMIT:
        raise LicenceError(f"at the limit a client is set to {' or '.join(AT_LIMIT)}")
    overlapping = select(LicenceTerm).where(
        LicenceTerm.client_id == client_id, LicenceTerm.starts_on <= ends_on, LicenceTerm.ends_on >= starts_on)
    if ignore is not None:
        overlapping = overlapping.where(LicenceTerm.id != ignore)
    overlap = session.scalar(overlapping.limit(1))
    if overlap is not None:
        raise LicenceError(f"this overlaps the term {overlap.starts_on} to {overlap.ends_on}")


def update_term(session: Session, term: LicenceTerm, *, actor: str, starts_on: dt.date, ends_on: dt.date,
                seat_limit: int | None, seat_window: str, at_limit: str, after_expiry: str,
                commit: bool = True) -> LicenceTerm:
    """Change a term (audited, before and after; commits unless told not to). Still never overlapping another term.

    Alerts already sent for its windows stay sent (their dedupe keys name the term and window).
    """
    _check_term(session, term.client_id, starts_on, ends_on, seat_limit, seat_window, at_limit, after_expiry,
                ignore=term.id)
    before = term.as_dict()
    term.starts_on, term.ends_on, term.seat_limit = starts_on, ends_on, seat_limit
    term.seat_window, term.at_limit, term.after_expiry = seat_window, at_limit, after_expiry
    after = term.as_dict()
    if after != before:
        audit.record(session, actor, "licence.term_update", term.client_id, before, after)
    if commit:
        session.commit()
    return term


def remove_term(session: Session, term: LicenceTerm, *, actor: str) -> None:
    """Delete a term (audited with what it was; commits). Counted usage is untouched: only the
    limit, window and policy of those days go (they fall back to the calendar month, no limit)."""
    audit.record(session, actor, "licence.term_remove", term.client_id, term.as_dict(), None)
    session.delete(term)
    session.commit()


def _same_day_later(day: dt.date, years: int = 0, months: int = 0) -> dt.date:
    month_index = day.month - 1 + months
    year = day.year + years + month_index // 12
    month = month_index % 12 + 1
    return dt.date(year, month, min(day.day, month_of(dt.date(year, month, 1)).end.day))


def renew_term(session: Session, client: Client, term: LicenceTerm, *, actor: str,
               seat_limit: int | None = None) -> LicenceTerm:
    """The next term: from the day after ``term`` ends, as long, the same settings (or a new limit)."""
    starts_on = term.ends_on + dt.timedelta(days=1)
    # A term of whole months (or years) renews as whole months: leap days and month lengths follow.
    months = (starts_on.year - term.starts_on.year) * 12 + starts_on.month - term.starts_on.month
    if starts_on == _same_day_later(term.starts_on, months=months):
        ends_on = _same_day_later(starts_on, months=months) - dt.timedelta(days=1)
    else:
        ends_on = starts_on + (term.ends_on - term.starts_on)
    return add_term(session, client, actor=actor, starts_on=starts_on, ends_on=ends_on,
                    seat_limit=term.seat_limit if seat_limit is None else seat_limit,
                    seat_window=term.seat_window, at_limit=term.at_limit, after_expiry=term.after_expiry)

# --- a new client with its first term ---------------------------------------------------


def first_term_dates(today: dt.date, licence_start: dt.date | None,
                     licence_end: dt.date | None) -> tuple[dt.date, dt.date]:
    """A new client's first licence term: from ``licence_start`` (default today) to ``licence_end``
    (default one year: the day before the same date next year)."""
    start = licence_start or today
    if licence_end is not None:
        if licence_end < start:
            raise ClientError(f"the licence term cannot end ({licence_end}) before it starts ({start})")
        return start, licence_end
    try:
        next_year = start.replace(year=start.year + 1)
    except ValueError:  # 29 February: a year later is 1 March
        next_year = dt.date(start.year + 1, 3, 1)
    return start, next_year - dt.timedelta(days=1)


def create_client_with_term(session: Session, *, name: str, actor: str, params: PseudonymParams,
                            seat_limit: int | None = None, licence_start: dt.date | None = None,
                            licence_end: dt.date | None = None, **settings) -> tuple[Client, str]:
    """``clients.create_client`` and, when ``seat_limit``, ``licence_start`` or ``licence_end`` is
    given, the client's first licence term (``first_term_dates``; seats counted over the term), in
    one transaction. Returns (client, plain key); commits."""
    if seat_limit is not None and seat_limit < 0:
        raise ClientError("seat limit must be zero or more")
    wants_term = seat_limit is not None or licence_start is not None or licence_end is not None
    if wants_term:
        term_start, term_end = first_term_dates(utcnow().date(), licence_start, licence_end)
    client, key = create_client(session, name=name, actor=actor, params=params, commit=False, **settings)
    if wants_term:
        add_term(session, client, actor=actor, starts_on=term_start, ends_on=term_end, seat_limit=seat_limit,
                 commit=False)
    session.commit()
    return client, key
