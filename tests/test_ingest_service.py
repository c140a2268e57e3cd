"""record_beacon(): the rows one beacon writes, on SQLite and PostgreSQL.

The statements are prebuilt per dialect (PostgreSQL runs the whole beacon as
one statement), so these tests pin down what each column receives, that a
repeated event ID changes nothing at all, and that concurrent writers lose
nothing and store a shared event ID once.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clients.services import ClientSnapshot, snapshot
from app.extensions import db
from app.ingest.beacons import Beacon, record_beacon
from app.models import DailyUsage, Event, Learner

DAY = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def record(client, beacon: Beacon, now: dt.datetime = DAY, session: Session | None = None,
           lms_host: str | None = "lms.example.com") -> bool:
    """``client`` is a Client, or its snapshot (threads must not touch the test's session)."""
    session = session or db.session
    if not isinstance(client, ClientSnapshot):
        client = snapshot(session, client)
    return record_beacon(session, current_app.extensions["pseudonymiser"], current_app.extensions["client_directory"],
                         client, beacon, lms_host=lms_host, now=now)


def fresh(model):
    db.session.rollback()
    return db.session.scalars(select(model).order_by(model.id)).all()


def test_a_beacon_writes_learner_event_and_day_of_use(make_client):
    client, _ = make_client()
    event_id = uuid.uuid4()
    beacon = Beacon(course="Fire Safety", student_id="s-42", student_name="Doe, Jane", event_id=event_id,
                    scorm_version="2004", package="pkg-7")
    assert record(client, beacon) is True

    [learner] = fresh(Learner)
    assert (learner.client_id, learner.identity, learner.name, learner.pseudonymised) == (
        client.id, "s-42", "Doe, Jane", False)
    assert learner.first_seen == learner.last_seen == DAY
    [event] = fresh(Event)
    assert (event.event_id, event.client_id, event.learner_id, event.kind, event.received_at) == (
        event_id, client.id, learner.id, "launch", DAY)
    assert (event.learner_name, event.lms_host, event.scorm_version, event.package_id) == (
        "Doe, Jane", "lms.example.com", "2004", "pkg-7")
    [usage] = fresh(DailyUsage)
    assert (usage.client_id, usage.course_id, usage.learner_id, usage.day) == (
        client.id, event.course_id, learner.id, DAY.date())
    assert (usage.launches, usage.completions, usage.first_at, usage.last_at) == (1, 0, DAY, DAY)


def test_a_repeated_event_id_changes_nothing(make_client):
    client, _ = make_client()
    event_id = uuid.uuid4()
    assert record(client, Beacon(course="C", student_id="s-1", student_name="First", event_id=event_id))
    later = DAY + dt.timedelta(hours=3)
    again = Beacon(course="C", student_id="s-1", student_name="Renamed", event_id=event_id)
    assert record(client, again, now=later) is False

    [learner] = fresh(Learner)
    assert (learner.name, learner.last_seen) == ("First", DAY)
    assert len(fresh(Event)) == 1
    [usage] = fresh(DailyUsage)
    assert (usage.launches, usage.last_at) == (1, DAY)


def test_a_returning_learner_keeps_one_row_and_gets_a_row_per_day(make_client):
    client, _ = make_client()
    record(client, Beacon(course="C", student_id="s-1", student_name="Jane", event_id=uuid.uuid4()))
    record(client, Beacon(course="C", student_id="s-1", student_name="Jane", event_id=uuid.uuid4()),
           now=DAY + dt.timedelta(hours=1))
    next_day = DAY + dt.timedelta(days=1)
    record(client, Beacon(course="C", student_id="s-1", student_name="Jane D.", event_id=uuid.uuid4()),
           now=next_day)

    [learner] = fresh(Learner)
    assert (learner.first_seen, learner.last_seen, learner.name) == (DAY, next_day, "Jane D.")
    usage = fresh(DailyUsage)
    assert [(u.day, u.launches, u.last_at) for u in usage] == [
        (DAY.date(), 2, DAY + dt.timedelta(hours=1)), (next_day.date(), 1, next_day)]


def test_completion_and_launch_share_the_day_row(make_client):
    client, _ = make_client()
    record(client, Beacon(course="C", student_id="s-1", student_name="J", event="completed", event_id=uuid.uuid4()))
    [usage] = fresh(DailyUsage)
    assert (usage.launches, usage.completions) == (0, 1)
    record(client, Beacon(course="C", student_id="s-1", student_name="J", event="launch", event_id=uuid.uuid4()))
    record(client, Beacon(course="C", student_id="s-1", student_name="J", event="passed", event_id=uuid.uuid4()))
    [usage] = fresh(DailyUsage)
    assert (usage.launches, usage.completions) == (1, 2)


def test_anonymised_learner_is_stored_as_pseudonym(make_client):
    client, _ = make_client(anonymised=True)
    record(client, Beacon(course="C", student_id="marker-id@example.com", student_name="Marker Name",
                          event_id=uuid.uuid4()))
    [learner] = fresh(Learner)
    assert learner.pseudonymised is True
    assert learner.identity.startswith("p:") and "marker" not in learner.identity
    assert learner.name.startswith("n:")
    [event] = fresh(Event)
    assert event.learner_name == learner.name


def test_concurrent_writers_lose_nothing_and_store_a_shared_event_once(app, make_client):
    """Threads with their own sessions: every acknowledged beacon is stored, shared event IDs once."""
    client = snapshot(db.session, make_client()[0])
    shared = [uuid.uuid4() for _ in range(4)]
    stored: list[uuid.UUID] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            with app.app_context(), Session(db.engine) as session:
                for i in range(12):
                    event_id = shared[i // 3] if i % 3 == 0 else uuid.uuid4()
                    beacon = Beacon(course=f"C{i % 2}", student_id=f"s-{(n + i) % 4}", student_name="N",
                                    event_id=event_id)
                    if record(client, beacon, session=session):
                        with lock:
                            stored.append(event_id)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    assert len(stored) == len(set(stored))  # each shared ID acknowledged as new exactly once
    db.session.rollback()
    in_database = set(db.session.scalars(select(Event.event_id)))
    assert in_database == set(stored)
    assert set(shared) <= in_database
    assert db.session.scalar(select(func.sum(DailyUsage.launches))) == len(stored)
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 4
