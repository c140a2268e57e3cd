"""Recording beacons: the hot path.

One beacon is one transaction: the learner (upserted), the event (stored once
per event ID) and the learner's day of use for the course. The caller answers
the beacon only after this commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..identity import Pseudonymiser
from ..models import COMPLETION_KINDS, Course, DailyUsage, Event, Learner, RefusedOrigin
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


def write_beacon(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                 client: ClientSnapshot, beacon: Beacon, lms_host: str | None, now: dt.datetime) -> bool:
    """Write one beacon's rows into the open transaction. False: event ID already stored."""
    insert = _insert(session)
    identity, name, pseudonymised = learner_identity(pseudonymiser, client, beacon)
    if client.links_pseudonyms and not pseudonymised:
        _link_pseudonymised_learner(session, pseudonymiser, client, beacon)
    course_id = _course_id(session, directory, client.id, beacon.course)

    learner_stmt = insert(Learner).values(
        client_id=client.id, identity=identity, pseudonymised=pseudonymised,
        name=name, first_seen=now, last_seen=now,
    )
    learner_id = session.scalar(
        learner_stmt.on_conflict_do_update(
            index_elements=["client_id", "identity"],
            set_={"last_seen": learner_stmt.excluded.last_seen, "name": learner_stmt.excluded.name},
        ).returning(Learner.id)
    )

    event_pk = session.scalar(
        insert(Event).values(
            event_id=beacon.event_id or uuid.uuid4(), client_id=client.id, course_id=course_id,
            learner_id=learner_id, kind=beacon.event, received_at=now, learner_name=name,
            lms_host=lms_host, scorm_version=beacon.scorm_version, package_id=beacon.package,
        ).on_conflict_do_nothing(index_elements=["event_id"]).returning(Event.id)
    )
    if event_pk is None:
        return False

    launches = 1 if beacon.event == "launch" else 0
    completions = 1 if beacon.event in COMPLETION_KINDS else 0
    usage_stmt = insert(DailyUsage).values(
        client_id=client.id, course_id=course_id, learner_id=learner_id, day=now.date(),
        launches=launches, completions=completions, first_at=now, last_at=now,
    )
    session.execute(
        usage_stmt.on_conflict_do_update(
            index_elements=["client_id", "course_id", "learner_id", "day"],
            set_={
                "launches": DailyUsage.launches + usage_stmt.excluded.launches,
                "completions": DailyUsage.completions + usage_stmt.excluded.completions,
                "last_at": usage_stmt.excluded.last_at,
            },
        )
    )
    return True


def record_beacon(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                  client: ClientSnapshot, beacon: Beacon, lms_host: str | None = None,
                  now: dt.datetime | None = None) -> bool:
    """Store one beacon and commit. True: stored now; False: stored before (same event ID).

    A repeated event ID changes nothing at all: the transaction is rolled back.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        stored = write_beacon(session, pseudonymiser, directory, client, beacon, lms_host, now)
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
        session.commit()
    except Exception:
        session.rollback()
        raise
