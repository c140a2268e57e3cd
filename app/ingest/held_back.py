"""Held-back beacons: what placeholder student IDs sent, how every face reports it, and release.

A beacon whose student ID is on its client's placeholder list (``placeholders``)
is stored in ``held_back_beacons`` by the ingest batch and nowhere else, so no
figure counts it. Every face reports the held-back beacons of its range (by
the UTC day they arrived) with the placeholder that held them back:
``figures``. A CSM releases them (``release``): they are then written as the
beacons they were (learner, event, per-day rows, on the day they arrived), in
one transaction with their webhook events, and counted once from then on; the
rows stay, marked released, so a retried beacon remains a duplicate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app import audit
from app.clients.services import ClientDirectory, snapshot
from app.identity.student_ids import InvalidIdentity, Pseudonymiser, normalise_name
from app.ingest.batch import _statements, begin_for_write, write_days
from app.ingest.group_commit import sqlite_writers
from app.learners.held_back_models import HeldBackBeacon
from app.models import Client, Course, utcnow
from app.outbound import outbox


@dataclass(frozen=True)
class HeldBackReason:
    """Held-back beacons of one placeholder (and course, where given)."""

    placeholder: str
    course: str | None
    beacons: int
    launches: int
    first_at: dt.datetime
    last_at: dt.datetime


@dataclass(frozen=True)
class HeldBackFigures:
    beacons: int
    launches: int
    by_placeholder: list[HeldBackReason]
    by_course: list[HeldBackReason]

    def as_report(self) -> dict:
        """The usage API's ``held_back`` object."""
        return {"beacons": self.beacons, "launches": self.launches,
                "reasons": [{"placeholder": r.placeholder, "beacons": r.beacons, "launches": r.launches}
                            for r in self.by_placeholder]}


def _unreleased(client_id: int, start: dt.date | None = None, end: dt.date | None = None,
                placeholder: str | None = None, course_id: int | None = None) -> tuple:
    where = [HeldBackBeacon.client_id == client_id, HeldBackBeacon.released_at.is_(None)]
    if course_id is not None:
        where.append(HeldBackBeacon.course_id == course_id)
    if start is not None:
        where.append(HeldBackBeacon.received_at >= dt.datetime.combine(start, dt.time(), dt.UTC))
    if end is not None:
        where.append(HeldBackBeacon.received_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC))
    if placeholder is not None:
        where.append(HeldBackBeacon.placeholder == placeholder)
    return tuple(where)


def figures(session: Session, client_id: int, start: dt.date | None = None, end: dt.date | None = None,
            placeholder: str | None = None, course_id: int | None = None) -> HeldBackFigures:
    """Beacons held back and not released, that arrived in the range (UTC days, inclusive; all without one),
    of one course when ``course_id`` is given."""
    launch = func.sum(case((HeldBackBeacon.kind == "launch", 1), else_=0))
    rows = session.execute(
        select(HeldBackBeacon.placeholder, Course.title, func.count(), launch,
               func.min(HeldBackBeacon.received_at), func.max(HeldBackBeacon.received_at))
        .join(Course, Course.id == HeldBackBeacon.course_id)
        .where(*_unreleased(client_id, start, end, placeholder, course_id))
        .group_by(HeldBackBeacon.placeholder, Course.title)
        .order_by(HeldBackBeacon.placeholder, Course.title)
    ).all()
    by_course = [HeldBackReason(p, title, n, int(launches or 0), first, last)
                 for p, title, n, launches, first, last in rows]
    by_placeholder: dict[str, HeldBackReason] = {}
    for r in by_course:
        seen = by_placeholder.get(r.placeholder)
        by_placeholder[r.placeholder] = r if seen is None else HeldBackReason(
            r.placeholder, None, seen.beacons + r.beacons, seen.launches + r.launches,
            min(seen.first_at, r.first_at), max(seen.last_at, r.last_at))
    placeholders = [HeldBackReason(r.placeholder, None, r.beacons, r.launches, r.first_at, r.last_at)
                    for r in by_placeholder.values()]
    placeholders.sort(key=lambda r: (-r.beacons, r.placeholder))
    return HeldBackFigures(sum(r.beacons for r in by_course), sum(r.launches for r in by_course),
                           placeholders, by_course)


@dataclass(frozen=True)
class Released:
    beacons: int
    launches: int
    placeholder: str | None


def release(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory | None, client: Client, *,
            actor: str, placeholder: str | None = None, now: dt.datetime | None = None) -> Released:
    """Count the client's held-back beacons (of one placeholder, or all). Audited; commits once.

    Each is written as the beacon it was, on the day it arrived: the learner
    (its stored identity: a pseudonym for anonymised clients), the event under
    its own event ID, the day of use, and its webhook event (``learner.enrolled``
    for a first launch; licence alerts follow from the worker's seat count).
    """
    now = now or utcnow()
    key = snapshot(session, client).pseudonym_key
    connection = session.connection()
    try:
        with sqlite_writers.turn(connection):
            begin_for_write(connection)
            done = _write_released(session, connection, pseudonymiser, directory, client, key, placeholder, now,
                                   actor)
            audit.record(session, actor, "held_back.release", client.id, None,
                         {"placeholder": placeholder or "(all)", "beacons": done.beacons,
                          "launches": done.launches})
            session.commit()
    except Exception:
        session.rollback()
        raise
    return done


def _write_released(session: Session, connection, pseudonymiser: Pseudonymiser, directory, client: Client, key,
                    placeholder: str | None, now: dt.datetime, actor: str) -> Released:
    statements = _statements(connection.dialect.name)
    held = list(session.scalars(
        select(HeldBackBeacon).where(*_unreleased(client.id, placeholder=placeholder))
        .order_by(HeldBackBeacon.received_at, HeldBackBeacon.id)))
    launched: set[tuple[int, int]] = set()
    launches = 0
    for row in held:
        identity, name, pseudonymised = row.identity, row.name, row.pseudonymised
        if client.anonymised and not pseudonymised:
            # Held while the client was verbatim and not swept by the switch (a stale cache): never plain now.
            identity, pseudonymised = pseudonymiser.pseudonym(key, identity), True
            name = _digest(pseudonymiser, key, name)
        params = {
            "client_id": client.id, "course_id": row.course_id, "identity": identity,
            "pseudonymised": pseudonymised, "name": name, "now": row.received_at, "day": row.received_at.date(),
            # No shape: a placeholder is no ID scheme, and drift detection skips learners without one.
            "id_shape": None,
            "event_id": row.event_id, "kind": row.kind, "lms_host": row.lms_host,
            "scorm_version": row.scorm_version, "package_id": row.package_id,
            "launches": 1 if row.kind == "launch" else 0,
            "completions": 1 if row.kind in ("completed", "passed") else 0,
        }
        params["learner_id"] = learner_id = connection.execute(statements.learner, params).scalar_one()
        row.released_at, row.released_by = now, actor
        if connection.execute(statements.event, params).first() is None:
            continue  # stored as an event already (it never should be): counted there, once
        write_days(connection, statements, params)
        launches += params["launches"]
        pair = (row.course_id, learner_id)
        if row.kind == "launch":
            if pair in launched:
                continue
            launched.add(pair)
        outbox.enqueue_for_beacon(connection, row.kind, client.id, row.course_id, learner_id, row.received_at,
                                  directory)
    session.flush()
    return Released(len(held), launches, placeholder)


def _digest(pseudonymiser: Pseudonymiser, key, name: str | None) -> str | None:
    if not name:
        return name
    try:
        return pseudonymiser.name_digest(key, normalise_name(name))
    except InvalidIdentity:
        return pseudonymiser.name_digest(key, name)
