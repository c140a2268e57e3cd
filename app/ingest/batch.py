"""One transaction of beacons: the steps the group committer (and record_beacon) run.

A batch holds the beacons of concurrent requests of one process (one beacon
when there is no concurrency). ``write_batch`` runs inside an open
transaction on a Core connection (no ORM session: its unit-of-work machinery
costs more than these statements) and never commits: the caller commits the
whole batch, or rolls all of it back and answers 503 to every beacon in it.

The steps, in order:

1. ``_read_modes``: each client's mode, active flag and salt, read in this
   transaction (``FOR SHARE`` on PostgreSQL; SQLite holds its write lock from
   ``BEGIN IMMEDIATE``), so a switch to anonymised that committed a moment
   ago is seen here and no stale cache stores a plain ID after it.
2. ``_mark_known_event_ids``: event IDs already stored, or repeated inside
   the batch, are duplicates and write nothing at all.
3. ``_write_beacon`` per remaining beacon: learner, event, and the per-day
   rows billing reads (day of use, day by source, and for a status its day
   of that status: ``write_days``); or,
   for a placeholder student ID (``placeholders``), ``_hold_beacon``: one row
   in ``held_back_beacons`` and nothing any count reads, until released.
4. ``record_stored_events``: the beacons stored now, with their event kind,
   course and learner known; the place for per-event rows that must commit
   with the beacon (the webhook outbox).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.clients.services import ClientDirectory, ClientSnapshot, stored_identity
from app.identity.placeholders import matched_placeholder
from app.identity.student_ids import Pseudonymiser, check_sealing, id_shape
from app.learners.held_back_models import HeldBackBeacon
from app.models import (
    COMPLETION_KINDS,
    NO_SOURCE,
    STATUS_KINDS,
    Client,
    Course,
    DailyOutcome,
    DailySource,
    DailyUsage,
    Event,
    Learner,
)
from app.outbound import outbox

STORED, DUPLICATE, REFUSED, UNAVAILABLE = "stored", "duplicate", "refused", "unavailable"


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
    # A sealed package's tracker found a placeholder before sealing the ID (only trusted for sealed clients).
    placeholder: bool = False


@dataclass(eq=False)
class PendingBeacon:
    """One beacon waiting for its transaction, and (once written) what happened to it."""

    client: ClientSnapshot
    beacon: Beacon
    lms_host: str | None
    now: dt.datetime
    # learner_identity(...) made before queueing (a new anonymised learner costs an Argon2 hash).
    identity: tuple[str, str, bool]
    event_id: uuid.UUID = dataclasses.field(default=None)  # type: ignore[assignment]
    outcome: str | None = None
    reason: str | None = None
    # True once the transaction holding this beacon has committed or rolled back.
    finished: bool = False
    # Set by _write_beacon for a stored beacon: what record_stored_events needs.
    course_id: int | None = None
    learner_id: int | None = None
    # The placeholder-list entry the student ID is (the beacon is then held back), or None.
    held_back: str | None = None

    def __post_init__(self):
        if self.event_id is None:
            self.event_id = self.beacon.event_id or uuid.uuid4()
        if self.held_back is None:
            if self.client.sealed:
                # A sealed ID cannot be compared with the list: the tracker flagged it before sealing
                # (against the default list); a client whose list a CSM emptied holds nothing back.
                self.held_back = (SEALED_PLACEHOLDER if self.beacon.placeholder and self.client.placeholder_ids
                                  else None)
            else:
                self.held_back = matched_placeholder(self.client.placeholder_ids, self.beacon.student_id)


# What a held-back beacon of a sealed client records as its placeholder (the value itself is sealed).
SEALED_PLACEHOLDER = "(flagged by the sealed package)"


def learner_identity(pseudonymiser: Pseudonymiser, client: ClientSnapshot, beacon: Beacon) -> tuple[str, str, bool]:
    """(stored identity, stored name, pseudonymised?) for this client's mode.

    InvalidIdentity for a plain ID sent for a sealed client, or a sealed one for another client.
    A placeholder ID is stored as its list entry, so ``UNDEFINED`` and
    ``undefined`` are one learner once released.
    """
    check_sealing(client.sealed, beacon.student_id, beacon.student_name)
    student_id = matched_placeholder(client.placeholder_ids, beacon.student_id) or beacon.student_id
    if client.anonymised:
        return (stored_identity(pseudonymiser, client, student_id),
                pseudonymiser.name_digest(client.pseudonym_key, beacon.student_name), True)
    return student_id, beacon.student_name, False


def _insert(connection: Connection):
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def _course_id(connection: Connection, directory: ClientDirectory, client_id: int, title: str) -> int:
    course_id = directory.course_id(client_id, title)
    if course_id is not None:
        return course_id
    query = select(Course.id).where(Course.client_id == client_id, Course.title == title)
    course_id = connection.scalar(query)
    if course_id is not None:
        # Cached only once committed by someone: a rolled-back insert must not linger.
        directory.remember_course(client_id, title, course_id)
        return course_id
    connection.execute(
        _insert(connection)(Course).values(client_id=client_id, title=title, created_at=dt.datetime.now(dt.UTC))
        .on_conflict_do_nothing(index_elements=["client_id", "title"])
    )
    return connection.scalar(query)


def _link_pseudonymised_learner(connection: Connection, pseudonymiser: Pseudonymiser, client: ClientSnapshot,
                                beacon: Beacon) -> None:
    """A client switched back to verbatim: a returning learner takes over their pseudonymised row.

    Without this they would be counted twice within a period (once under the
    pseudonym, once under the plain ID).
    """
    exists = connection.scalar(
        select(Learner.id).where(Learner.client_id == client.id, Learner.identity == beacon.student_id)
    )
    if exists is not None:
        return
    pseudonym = pseudonymiser.pseudonym(client.pseudonym_key, beacon.student_id)
    connection.execute(
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
    the same steps one after the other.
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
            id_shape=bindparam("id_shape", type_=learners.c.id_shape.type),
        )
        self.learner = learner.on_conflict_do_update(
            index_elements=["client_id", "identity"],
            # A learner stored before shapes were kept gets its shape when it returns.
            set_={"last_seen": learner.excluded.last_seen, "name": learner.excluded.name,
                  "id_shape": func.coalesce(learners.c.id_shape, learner.excluded.id_shape)},
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

        # The day by LMS host and package ID (any kind), and the day of a status (not a launch).
        sources, outcomes = DailySource.__table__, DailyOutcome.__table__
        source_columns = {
            "client_id": p["client_id"],
            "course_id": p["course_id"],
            "learner_id": bindparam("learner_id", type_=sources.c.learner_id.type),
            "day": bindparam("day", type_=sources.c.day.type),
            "lms_host": func.coalesce(bindparam("lms_host", type_=sources.c.lms_host.type), NO_SOURCE),
            "package_id": func.coalesce(bindparam("package_id", type_=sources.c.package_id.type), NO_SOURCE),
            "launches": bindparam("launches", type_=sources.c.launches.type),
            "first_at": p["now"],
            "last_at": p["now"],
        }
        source_key = ["client_id", "course_id", "learner_id", "day", "lms_host", "package_id"]
        outcome_columns = {
            "client_id": p["client_id"],
            "course_id": p["course_id"],
            "learner_id": bindparam("learner_id", type_=outcomes.c.learner_id.type),
            "day": bindparam("day", type_=outcomes.c.day.type),
            "kind": bindparam("kind", type_=outcomes.c.kind.type),
            "first_at": p["now"],
            "last_at": p["now"],
        }
        outcome_key = ["client_id", "course_id", "learner_id", "day", "kind"]

        # The earliest and latest of two times (a released held-back beacon writes a past time).
        earliest, latest = (func.least, func.greatest) if dialect_name == "postgresql" else (func.min, func.max)

        def source_upsert(statement):
            return statement.on_conflict_do_update(index_elements=source_key, set_={
                "launches": sources.c.launches + statement.excluded.launches,
                "first_at": earliest(sources.c.first_at, statement.excluded.first_at),
                "last_at": latest(sources.c.last_at, statement.excluded.last_at)})

        def outcome_upsert(statement):
            return statement.on_conflict_do_update(index_elements=outcome_key, set_={
                "first_at": earliest(outcomes.c.first_at, statement.excluded.first_at),
                "last_at": latest(outcomes.c.last_at, statement.excluded.last_at)})

        self.source = source_upsert(insert(sources).values(**source_columns))
        self.outcome = outcome_upsert(insert(outcomes).values(**outcome_columns))

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
            source_select = select(*[
                event_cte.c.learner_id if name == "learner_id" else value for name, value in source_columns.items()
            ])
            source_cte = source_upsert(insert(sources).from_select(list(source_columns), source_select)).cte(
                "beacon_source")
            outcome_select = select(*[
                event_cte.c.learner_id if name == "learner_id" else value for name, value in outcome_columns.items()
            # A status is every kind but a launch (EVENT_KINDS); one plain bound value, no expanding IN.
            ]).where(bindparam("kind", type_=outcomes.c.kind.type) != "launch")
            outcome_cte = outcome_upsert(insert(outcomes).from_select(list(outcome_columns), outcome_select)).cte(
                "beacon_outcome")
            combined = insert(usage).from_select(list(usage_columns), usage_select)
            # The source and status rows are data-modifying CTEs nothing reads: PostgreSQL runs them
            # all the same, in this one statement (add_cte renders them).
            self.combined = combined.on_conflict_do_update(
                index_elements=["client_id", "course_id", "learner_id", "day"],
                set_={
                    "launches": usage.c.launches + combined.excluded.launches,
                    "completions": usage.c.completions + combined.excluded.completions,
                    "last_at": combined.excluded.last_at,
                },
            ).returning(usage.c.learner_id).add_cte(source_cte, outcome_cte)

        clients = Client.__table__
        modes = select(clients.c.id, clients.c.active, clients.c.anonymised, clients.c.salt.is_not(None)).where(
            clients.c.id.in_(bindparam("client_ids", expanding=True)))
        # FOR SHARE: a mode switch (an UPDATE of the client row) waits for this batch, and this batch
        # for a switch in flight, so the mode read here is the one in force when the beacon commits.
        self.modes = modes.with_for_update(read=True) if dialect_name == "postgresql" else modes
        self.known_event_ids = select(events.c.event_id).where(
            events.c.event_id.in_(bindparam("event_ids", expanding=True)))

        held = HeldBackBeacon.__table__
        self.held = (insert(held).values(
            event_id=bindparam("event_id", type_=held.c.event_id.type), client_id=p["client_id"],
            course_id=p["course_id"], identity=bindparam("identity", type_=held.c.identity.type),
            pseudonymised=bindparam("pseudonymised", type_=held.c.pseudonymised.type),
            name=bindparam("name", type_=held.c.name.type),
            placeholder=bindparam("placeholder", type_=held.c.placeholder.type),
            kind=bindparam("kind", type_=held.c.kind.type), received_at=p["now"],
            lms_host=bindparam("lms_host", type_=held.c.lms_host.type),
            scorm_version=bindparam("scorm_version", type_=held.c.scorm_version.type),
            package_id=bindparam("package_id", type_=held.c.package_id.type),
        ).on_conflict_do_nothing(index_elements=["event_id"]).returning(held.c.id))
        self.known_held_event_ids = select(held.c.event_id).where(
            held.c.event_id.in_(bindparam("event_ids", expanding=True)))


@functools.cache
def _statements(dialect_name: str) -> _Statements:
    return _Statements(dialect_name)


def begin_for_write(connection: Connection) -> None:
    """Open the transaction as a writer from its first statement.

    SQLite (pysqlite) would otherwise read the mode outside any transaction
    and only lock at the first INSERT, leaving a gap for a mode switch to
    commit in between. PostgreSQL needs nothing: ``FOR SHARE`` does it.
    """
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def write_batch(connection: Connection, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                batch: list[PendingBeacon]) -> None:
    """Write a batch into the open transaction; sets each beacon's outcome. Never commits."""
    statements = _statements(connection.dialect.name)
    _read_modes(connection, statements, pseudonymiser, directory, batch)
    _mark_known_event_ids(connection, statements, batch)
    # Rows are locked in one order (client, learner, course) in every batch of every process:
    # two PostgreSQL batches sharing returning learners would otherwise deadlock.
    waiting = sorted((p for p in batch if p.outcome is None),
                     key=lambda p: (p.client.id, p.identity[0], p.beacon.course))
    for pending in waiting:
        write = _hold_beacon if pending.held_back else _write_beacon
        stored = write(connection, statements, pseudonymiser, directory, pending)
        pending.outcome = STORED if stored else DUPLICATE
    # A held-back beacon announces nothing (no enrolment, no licence alert) until it is released.
    record_stored_events(connection, directory, [p for p in batch if p.outcome == STORED and not p.held_back])


def _read_modes(connection: Connection, statements: _Statements, pseudonymiser: Pseudonymiser,
                directory: ClientDirectory, batch: list[PendingBeacon]) -> None:
    """Step 1: each client as it is now, in this transaction, not as the cache last saw it."""
    rows = connection.execute(statements.modes, {"client_ids": sorted({p.client.id for p in batch})})
    current = {row[0]: row[1:] for row in rows}
    for pending in batch:
        client = pending.client
        active, anonymised, has_salt = current.get(client.id, (False, client.anonymised, False))
        if not active:
            pending.outcome, pending.reason = REFUSED, "unknown_key"
        elif anonymised and not has_salt:
            pending.outcome, pending.reason = REFUSED, "pseudonyms_shredded"
        elif anonymised != client.anonymised:
            # The cached snapshot predates a mode switch: this beacon follows the mode in force,
            # and the next beacons of this process reload the client.
            directory.forget_client(client.id)
            pending.client = dataclasses.replace(
                client, anonymised=anonymised, links_pseudonyms=client.links_pseudonyms or client.anonymised)
            pending.identity = learner_identity(pseudonymiser, pending.client, pending.beacon)


def _mark_known_event_ids(connection: Connection, statements: _Statements, batch: list[PendingBeacon]) -> None:
    """Step 2: an event ID stored before, or twice in this batch, is a duplicate and writes nothing."""
    waiting = [p for p in batch if p.outcome is None]
    if not waiting:
        return
    known = set(connection.scalars(statements.known_event_ids, {"event_ids": [p.event_id for p in waiting]}))
    held = [p.event_id for p in waiting if p.held_back]
    if held:
        known.update(connection.scalars(statements.known_held_event_ids, {"event_ids": held}))
    for pending in waiting:
        if pending.event_id in known:
            pending.outcome = DUPLICATE
        known.add(pending.event_id)


def _write_beacon(connection: Connection, statements: _Statements, pseudonymiser: Pseudonymiser,
                  directory: ClientDirectory, pending: PendingBeacon) -> bool:
    """Step 3: one beacon's rows. False: its event ID was stored meanwhile by another process."""
    client, beacon = pending.client, pending.beacon
    identity, name, pseudonymised = pending.identity
    if client.links_pseudonyms and not pseudonymised:
        _link_pseudonymised_learner(connection, pseudonymiser, client, beacon)
    course_id = _course_id(connection, directory, client.id, beacon.course)
    params = {
        "client_id": client.id, "course_id": course_id, "identity": identity, "pseudonymised": pseudonymised,
        # The shape of the plain, normalised ID (never the ID): kept in both modes for drift detection.
        "id_shape": id_shape(beacon.student_id), "name": name, "now": pending.now, "day": pending.now.date(),
        "event_id": pending.event_id, "kind": beacon.event, "lms_host": pending.lms_host,
        "scorm_version": beacon.scorm_version, "package_id": beacon.package,
        "launches": 1 if beacon.event == "launch" else 0,
        "completions": 1 if beacon.event in COMPLETION_KINDS else 0,
    }
    pending.course_id = course_id
    if statements.combined is not None:
        # One round trip; no row back means the event ID was stored by a concurrent transaction.
        row = connection.execute(statements.combined, params).first()
        if row is None:
            return False
        pending.learner_id = row[0]
        return True
    params["learner_id"] = pending.learner_id = connection.execute(statements.learner, params).scalar_one()
    if connection.execute(statements.event, params).first() is None:
        return False
    write_days(connection, statements, params)
    return True


def write_days(connection: Connection, statements: _Statements, params: dict) -> None:
    """The per-day rows of one stored event (SQLite's steps; PostgreSQL's ``combined`` holds them too):
    its day of use, its day by LMS host and package ID, and for a status its day of that status."""
    connection.execute(statements.usage, params)
    connection.execute(statements.source, params)
    if params["kind"] in STATUS_KINDS:
        connection.execute(statements.outcome, params)


def _hold_beacon(connection: Connection, statements: _Statements, pseudonymiser: Pseudonymiser,
                 directory: ClientDirectory, pending: PendingBeacon) -> bool:
    """Step 3 for a placeholder ID: kept, counted nowhere. False: its event ID was held meanwhile."""
    client, beacon = pending.client, pending.beacon
    identity, name, pseudonymised = pending.identity
    pending.course_id = _course_id(connection, directory, client.id, beacon.course)
    row = connection.execute(statements.held, {
        "event_id": pending.event_id, "client_id": client.id, "course_id": pending.course_id,
        "identity": identity, "pseudonymised": pseudonymised, "name": name, "placeholder": pending.held_back,
        "kind": beacon.event, "now": pending.now, "lms_host": pending.lms_host,
        "scorm_version": beacon.scorm_version, "package_id": beacon.package,
    }).first()
    return row is not None


def record_stored_events(connection: Connection, directory: ClientDirectory, stored: list[PendingBeacon]) -> None:
    """Step 4: rows that must commit with the beacons stored in this batch: the outbox's events.

    Each ``PendingBeacon`` here was stored now (never a duplicate) and carries
    ``client``, ``beacon.event`` (launch / completed / passed / failed),
    ``course_id``, ``learner_id`` and the stored ``identity`` (a pseudonym for
    anonymised clients). The webhook outbox inserts its rows here, in the
    beacon's transaction, so an event is announced if and only if it is stored.
    """
    launched = set()
    for pending in stored:
        if pending.beacon.event == "launch":
            # A second launch of the same learner and course in one batch would conflict with the
            # first one's uncommitted row, and a conflict marks the enrolment as committed.
            pair = (pending.client.id, pending.course_id, pending.learner_id)
            if pair in launched:
                continue
            launched.add(pair)
        outbox.enqueue_for_beacon(connection, pending.beacon.event, pending.client.id, pending.course_id,
                                  pending.learner_id, pending.now, directory)
