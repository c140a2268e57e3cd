"""Recording beacons: the hot path.

One beacon is one transaction: the learner (upserted), the event (stored once
per event ID) and the learner's day of use for the course. The caller answers
the beacon only after this commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import os
import threading
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..identity import Pseudonymiser
from ..models import COMPLETION_KINDS, Course, DailyUsage, Event, Learner, RefusedOrigin
from . import outbox
from .clients import ClientDirectory, ClientSnapshot


@dataclass(frozen=True)
class Beacon:
    """A validated, normalised beacon (see schemas.BeaconSchema)."""

    course: str
    student_id: str
    student_name: str
    event: str = "launch"
    event_id: uuid.UUID | None = None
    scorm_version: str | None = None
    package: str | None = None


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _course_id(session: Session, directory: ClientDirectory, client_id: int, title: str) -> int:
    course_id = directory.course_id(client_id, title)
    if course_id is not None:
        return course_id
    course_id = session.scalar(select(Course.id).where(Course.client_id == client_id, Course.title == title))
    if course_id is not None:
        # Cached only once committed by someone: a rolled-back insert must not linger.
        directory.remember_course(client_id, title, course_id)
        return course_id
    session.execute(
        _insert(session)(Course).values(client_id=client_id, title=title, created_at=dt.datetime.now(dt.UTC))
        .on_conflict_do_nothing(index_elements=["client_id", "title"])
    )
    return session.scalar(select(Course.id).where(Course.client_id == client_id, Course.title == title))


def learner_identity(pseudonymiser: Pseudonymiser, client: ClientSnapshot, beacon: Beacon) -> tuple[str, str, bool]:
    """(stored identity, stored name, pseudonymised?) for this client's mode."""
    if client.anonymised:
        key = client.pseudonym_key
        return (pseudonymiser.pseudonym(key, beacon.student_id),
                pseudonymiser.name_digest(key, beacon.student_name), True)
    return beacon.student_id, beacon.student_name, False


def _link_pseudonymised_learner(session: Session, pseudonymiser: Pseudonymiser, client: ClientSnapshot,
                                beacon: Beacon) -> None:
    """A client switched back to verbatim: a returning learner takes over their pseudonymised row.

    Without this they would be counted twice within a period (once under the
    pseudonym, once under the plain ID).
    """
    exists = session.scalar(
        select(Learner.id).where(Learner.client_id == client.id, Learner.identity == beacon.student_id)
    )
    if exists is not None:
        return
    pseudonym = pseudonymiser.pseudonym(client.pseudonym_key, beacon.student_id)
    session.execute(
        update(Learner)
        .where(Learner.client_id == client.id, Learner.identity == pseudonym, Learner.pseudonymised.is_(True))
        .values(identity=beacon.student_id, pseudonymised=False, name=beacon.student_name)
    )


class _Statements:
    """The beacon's statements, built once per dialect with bound parameters.

    Building ``insert(...).on_conflict_...`` per beacon cost more CPU than
    running it (SQLAlchemy rebuilds the ``excluded`` alias and the ORM bulk
    path each time); these are plain Core statements on the tables, so only
    the compiled-cache lookup remains. PostgreSQL gets the whole beacon in one
    statement (data-modifying CTEs: one round trip); SQLite, in-process, runs
    the same three steps one after the other.
    """

    def __init__(self, dialect_name: str):
        insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
        learners, events, usage = Learner.__table__, Event.__table__, DailyUsage.__table__
        p = {
            "client_id": bindparam("client_id", type_=learners.c.client_id.type),
            "course_id": bindparam("course_id", type_=events.c.course_id.type),
            "now": bindparam("now", type_=learners.c.last_seen.type),
        }

        learner = insert(learners).values(
            client_id=p["client_id"], identity=bindparam("identity", type_=learners.c.identity.type),
            pseudonymised=bindparam("pseudonymised", type_=learners.c.pseudonymised.type),
            name=bindparam("name", type_=learners.c.name.type), first_seen=p["now"], last_seen=p["now"],
        )
        self.learner = learner.on_conflict_do_update(
            index_elements=["client_id", "identity"],
            set_={"last_seen": learner.excluded.last_seen, "name": learner.excluded.name},
        ).returning(learners.c.id)

        event_columns = {
            "event_id": bindparam("event_id", type_=events.c.event_id.type),
            "client_id": p["client_id"],
            "course_id": p["course_id"],
            "learner_id": bindparam("learner_id", type_=events.c.learner_id.type),
            "kind": bindparam("kind", type_=events.c.kind.type),
            "received_at": p["now"],
            "learner_name": bindparam("name", type_=events.c.learner_name.type),
            "lms_host": bindparam("lms_host", type_=events.c.lms_host.type),
            "scorm_version": bindparam("scorm_version", type_=events.c.scorm_version.type),
            "package_id": bindparam("package_id", type_=events.c.package_id.type),
        }
        self.event = (insert(events).values(**event_columns)
                      .on_conflict_do_nothing(index_elements=["event_id"]).returning(events.c.id))

        usage_columns = {
            "client_id": p["client_id"],
            "course_id": p["course_id"],
            "learner_id": bindparam("learner_id", type_=usage.c.learner_id.type),
            "day": bindparam("day", type_=usage.c.day.type),
            "launches": bindparam("launches", type_=usage.c.launches.type),
            "completions": bindparam("completions", type_=usage.c.completions.type),
            "first_at": p["now"],
            "last_at": p["now"],
        }
        usage_stmt = insert(usage).values(**usage_columns)
        usage_set = {
            "launches": usage.c.launches + usage_stmt.excluded.launches,
            "completions": usage.c.completions + usage_stmt.excluded.completions,
            "last_at": usage_stmt.excluded.last_at,
        }
        self.usage = usage_stmt.on_conflict_do_update(
            index_elements=["client_id", "course_id", "learner_id", "day"], set_=usage_set)

        self.combined = None
        if dialect_name == "postgresql":
            learner_cte = self.learner.cte("beacon_learner")
            event_select = select(*[
                learner_cte.c.id if name == "learner_id" else value for name, value in event_columns.items()
            ])
            event_cte = (insert(events).from_select(list(event_columns), event_select)
                         .on_conflict_do_nothing(index_elements=["event_id"])
                         .returning(events.c.learner_id).cte("beacon_event"))
            usage_select = select(*[
                event_cte.c.learner_id if name == "learner_id" else value for name, value in usage_columns.items()
            ])
            combined = insert(usage).from_select(list(usage_columns), usage_select)
            self.combined = combined.on_conflict_do_update(
                index_elements=["client_id", "course_id", "learner_id", "day"],
                set_={
                    "launches": usage.c.launches + combined.excluded.launches,
                    "completions": usage.c.completions + combined.excluded.completions,
                    "last_at": combined.excluded.last_at,
                },
            ).returning(usage.c.id, usage.c.learner_id)


@functools.cache
def _statements(dialect_name: str) -> _Statements:
    return _Statements(dialect_name)


def write_beacon(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                 client: ClientSnapshot, beacon: Beacon, lms_host: str | None, now: dt.datetime,
                 identity: tuple[str, str, bool] | None = None) -> bool:
    """Write one beacon's rows into the open transaction. False: event ID already stored.

    ``identity`` is ``learner_identity(...)`` when the caller has made it already.
    """
    identity, name, pseudonymised = identity or learner_identity(pseudonymiser, client, beacon)
    if client.links_pseudonyms and not pseudonymised:
        _link_pseudonymised_learner(session, pseudonymiser, client, beacon)
    course_id = _course_id(session, directory, client.id, beacon.course)

    statements = _statements(session.get_bind().dialect.name)
    params = {
        "client_id": client.id, "course_id": course_id, "identity": identity, "pseudonymised": pseudonymised,
        "name": name, "now": now, "day": now.date(),
        "event_id": beacon.event_id or uuid.uuid4(), "kind": beacon.event, "lms_host": lms_host,
        "scorm_version": beacon.scorm_version, "package_id": beacon.package,
        "launches": 1 if beacon.event == "launch" else 0,
        "completions": 1 if beacon.event in COMPLETION_KINDS else 0,
    }
    connection = session.connection()
    if statements.combined is not None:
        # One round trip; no row back means the event ID was stored before.
        stored = connection.execute(statements.combined, params).first()
        if stored is None:
            return False
        params["learner_id"] = stored.learner_id
    else:
        params["learner_id"] = connection.execute(statements.learner, params).scalar_one()
        if connection.execute(statements.event, params).first() is None:
            return False
        connection.execute(statements.usage, params)
    # Issue 12: webhooks and alerts leave through the outbox, written in this same transaction.
    outbox.enqueue_for_beacon(session, beacon.event, client.id, course_id, params["learner_id"], now, directory)
    return True


class _SQLiteWriters:
    """Beacon writers on one SQLite file take turns in a queue instead of polling its lock.

    SQLite lets one writer in at a time and makes the others retry after
    growing sleeps (the busy timeout): with several gunicorn workers or
    threads that shows as p99 latencies of hundreds of milliseconds. A
    thread lock per process and an ``flock`` on a file beside the database
    across processes let the next writer in as soon as the last commits.
    Other writers (admin, CLI) still meet SQLite's own lock and busy timeout.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def turn(self, session: Session):
        bind = session.get_bind()
        database = bind.url.database if bind.dialect.name == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            yield
            return
        with self._guard:
            if database not in self._locks:
                fd = os.open(database + ".writers", os.O_RDWR | os.O_CREAT, 0o600)
                self._locks[database] = (threading.Lock(), fd)
            thread_lock, fd = self._locks[database]
        with thread_lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


_sqlite_writers = _SQLiteWriters()


def record_beacon(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                  client: ClientSnapshot, beacon: Beacon, lms_host: str | None = None,
                  now: dt.datetime | None = None) -> bool:
    """Store one beacon and commit. True: stored now; False: stored before (same event ID).

    A repeated event ID changes nothing at all: the transaction is rolled back.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        # The pseudonym of a new anonymised learner costs an Argon2 hash: make it
        # before queueing for SQLite's write lock, not while holding it.
        identity = learner_identity(pseudonymiser, client, beacon)
        with _sqlite_writers.turn(session):
            stored = write_beacon(session, pseudonymiser, directory, client, beacon, lms_host, now, identity)
            if stored:
                session.commit()
            else:
                session.rollback()
        return stored
    except Exception:
        session.rollback()
        raise


def record_refused_origin(session: Session, client_id: int, origin: str, now: dt.datetime | None = None) -> None:
    """Count a beacon refused for its origin (the go-live check lists these hosts). Commits."""
    now = now or dt.datetime.now(dt.UTC)
    insert = _insert(session)
    stmt = insert(RefusedOrigin).values(client_id=client_id, origin=origin[:255], count=1,
                                        first_seen=now, last_seen=now)
    try:
        session.execute(stmt.on_conflict_do_update(
            index_elements=["client_id", "origin"],
            set_={"count": RefusedOrigin.count + 1, "last_seen": stmt.excluded.last_seen},
        ))
        outbox.enqueue_refused_origin(session, client_id, origin[:255], now)
        session.commit()
    except Exception:
        session.rollback()
        raise
