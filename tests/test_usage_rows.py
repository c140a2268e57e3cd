"""The per-day rows the origin/package breakdown and the learners' statuses are counted from
(``daily_sources``, ``daily_outcomes``): written with each beacon in its transaction, followed by
release, erasure and the anonymisation switch, filled from the events by the migration, and the
only thing those views read (DESIGN: billing views never scan raw events to count).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import pytest
import time_machine
from conftest import ROOT, beacon_body
from sqlalchemy import delete, func, select, text

from app.billing import figures as billing
from app.clients import services as client_service
from app.extensions import db
from app.ingest import held_back
from app.ingest.beacons import Beacon, record_beacon
from app.learners import anonymisation
from app.models import Course, DailyOutcome, DailySource, DailyUsage, Event, Learner
from app.staff import services as staff_service

RANGE = "from=2026-11-01&to=2026-11-30"
NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)


# when, student, course, kind, Origin header (None: not sent), package ID (None: not sent).
# old-bob is merged into bob.
BEACONS = [
    (at(2, 9), "amy", "Course A", "launch", "https://lms-a.example", "p1"),
    (at(2, 9, 30), "amy", "Course A", "completed", "https://lms-a.example", "p1"),
    (at(3, 9), "amy", "Course B", "launch", "https://lms-b.example", None),
    (at(3, 10), "amy", "Course B", "failed", "https://lms-b.example", None),
    (at(4, 10), "amy", "Course B", "passed", "https://lms-b.example", None),   # a retake that passes
    (at(5, 9), "old-bob", "Course A", "launch", "https://lms-a.example", "p1"),
    (at(5, 9, 20), "old-bob", "Course A", "failed", "https://lms-a.example", "p1"),
    (at(6, 9), "bob", "Course A", "launch", None, None),
    (at(30, 23, 59), "cy", "Course A", "launch", "https://lms-a.example", "p1"),
    (at(1, 0, 1, month=12), "cy", "Course A", "completed", "https://lms-a.example", "p1"),   # after the range
]
ORIGINS = [("lms-a.example", 3, 3), ("lms-b.example", 1, 1), (None, 1, 1)]
PACKAGES = [("p1", 3, 3), (None, 2, 2)]
STATUSES = {("amy", "Course A"): "completed", ("amy", "Course B"): "passed", ("bob", "Course A"): "failed",
            ("cy", "Course A"): "launched"}


def post(http, key: str, when, student, course, kind, origin, package, event_id=None) -> int:
    body = beacon_body(key, student_id=student, student_name=student.title(), course=course, event=kind,
                       package=package, event_id=event_id or str(uuid.uuid4()))
    with time_machine.travel(when, tick=False):
        return http.post("/api/v1/beacons", json={k: v for k, v in body.items() if v is not None},
                         headers={"Origin": origin} if origin else {}).status_code


def send_all(http, runner, client_row, key: str) -> None:
    for beacon in BEACONS:
        assert post(http, key, *beacon) == 204
    merged = runner.invoke(args=["learner", "merge", "--client", client_row.slug, "--student-id", "old-bob",
                                 "--into", "bob"])
    assert merged.exit_code == 0, merged.output


def faces(http, client_row, token: str) -> tuple:
    """What the usage API and learners.csv show over November: (origins, packages, learners.csv rows)."""
    headers = {"Authorization": f"Bearer {token}"}
    report = http.get(f"/api/v1/clients/{client_row.slug}/usage?{RANGE}", headers=headers).json
    origins = [(o["lms_host"], o["unique_users"], o["launches"]) for o in report["origins"]]
    packages = [(p["package"], p["unique_users"], p["launches"]) for p in report["packages"]]
    learners = http.get(f"/billing/{client_row.slug}/learners.csv?{RANGE}", headers=headers)
    assert learners.status_code == 200
    return origins, packages, learners.get_data(as_text=True)


def rows(model, client_id: int) -> set[tuple]:
    """A per-day table's rows of a client, without their ids (the learner by identity)."""
    columns = [c for c in model.__table__.c if c.name not in ("id", "learner_id")]
    return {tuple(r) for r in db.session.execute(
        select(Learner.identity, *columns).join(Learner, Learner.id == model.learner_id)
        .where(model.client_id == client_id))}


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_breakdowns_and_statuses_come_from_the_day_rows_not_the_events(client, runner, make_client, make_staff,
                                                                       anonymised):
    acme, key = make_client(name="Acme", anonymised=anonymised)
    send_all(client, runner, acme, key)
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    before = faces(client, acme, token)
    assert before[:2] == (ORIGINS, PACKAGES)
    outcomes = billing.learner_outcomes(db.session, acme.id, *NOV)
    assert sorted(o.status for o in outcomes.values()) == sorted(s for s in STATUSES.values() if s != "launched")
    if not anonymised:
        learners = {(r["student_id"], r["course"]): r for r in csv.DictReader(io.StringIO(before[2]))}
        assert {pair: r["status"] for pair, r in learners.items()} == STATUSES
        assert (learners[("amy", "Course B")]["failed_at"], learners[("amy", "Course B")]["passed_at"]) == (
            "2026-11-03T10:00:00Z", "2026-11-04T10:00:00Z")

    # Every raw event gone: the views answer the same, so they never read ``events``.
    db.session.execute(delete(Event).where(Event.client_id == acme.id))
    db.session.commit()
    assert faces(client, acme, token) == before
    assert billing.learner_outcomes(db.session, acme.id, *NOV) == outcomes


def test_every_event_kind_writes_its_day_rows_in_the_beacons_transaction(client, make_client, app):
    acme, key = make_client(name="Acme")
    assert post(client, key, at(2, 9), "amy", "Course A", "launch", "https://lms-a.example", "p1") == 204
    assert post(client, key, at(2, 11), "amy", "Course A", "launch", "https://lms-a.example", "p1") == 204
    assert post(client, key, at(2, 10), "amy", "Course A", "completed", None, None) == 204
    assert rows(DailySource, acme.id) == {
        ("amy", acme.id, *_course_and_day(acme, "Course A", 2), "lms-a.example", "p1", 2, at(2, 9), at(2, 11)),
        ("amy", acme.id, *_course_and_day(acme, "Course A", 2), "", "", 0, at(2, 10), at(2, 10)),
    }
    assert rows(DailyOutcome, acme.id) == {
        ("amy", acme.id, *_course_and_day(acme, "Course A", 2), "completed", at(2, 10), at(2, 10))}

    # A failure in the last table written rolls the whole beacon back: 503, nothing stored anywhere,
    # and the retry under the same event ID is stored once, in every table.
    counts = {model: _count(model) for model in (Event, DailyUsage, DailySource, DailyOutcome)}
    event_id = str(uuid.uuid4())
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE daily_outcomes RENAME TO daily_outcomes_away"))
    try:
        assert post(client, key, at(3, 9), "amy", "Course A", "passed", None, None, event_id) == 503
    finally:
        db.session.rollback()
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE daily_outcomes_away RENAME TO daily_outcomes"))
        db.engine.dispose()  # no pooled connection keeps a statement prepared against the renamed table
    assert {model: _count(model) for model in counts} == counts
    assert post(client, key, at(3, 9), "amy", "Course A", "passed", None, None, event_id) == 204
    assert post(client, key, at(3, 9), "amy", "Course A", "passed", None, None, event_id) == 204   # duplicate
    assert {model: _count(model) - counts[model] for model in counts} == {
        Event: 1, DailyUsage: 1, DailySource: 1, DailyOutcome: 1}


def test_a_released_beacon_counts_on_the_day_it_arrived(client, make_client, app):
    acme, key = make_client(name="Acme")
    assert post(client, key, at(2, 9), "undefined", "Course A", "launch", "https://lms-a.example", "p1") == 204
    assert post(client, key, at(2, 8), "undefined", "Course A", "failed", "https://lms-a.example", "p1") == 204
    assert billing.origin_usage(db.session, acme.id, *NOV) == []
    assert billing.learner_outcomes(db.session, acme.id, *NOV) == {}
    held_back.release(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], acme,
                      actor="test")
    assert [(s.source, s.unique_users, s.launches) for s in billing.origin_usage(db.session, acme.id, *NOV)] == [
        ("lms-a.example", 1, 1)]
    (outcome,) = billing.learner_outcomes(db.session, acme.id, *NOV).values()
    assert (outcome.status, outcome.failed_at) == ("failed", at(2, 8))
    (source,) = rows(DailySource, acme.id)
    assert source[-2:] == (at(2, 8), at(2, 9))   # the earlier beacon, released later, is the first


def test_erasure_removes_the_day_rows_of_the_person(client, runner, make_client):
    acme, key = make_client(name="Acme")
    send_all(client, runner, acme, key)
    bob_ids = set(db.session.scalars(select(Learner.id).where(Learner.identity.in_(["bob", "old-bob"]))))
    assert len(bob_ids) == 2
    assert {r[0] for r in rows(DailySource, acme.id)} == {"amy", "old-bob", "bob", "cy"}
    erased = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "bob"])
    assert erased.exit_code == 0, erased.output
    for model in (DailySource, DailyOutcome):
        assert db.session.scalar(select(func.count()).select_from(model).where(model.learner_id.in_(bob_ids))) == 0
        assert {r[0] for r in rows(model, acme.id)} <= {"amy", "cy"} and rows(model, acme.id)
    assert [(s.source, s.unique_users, s.launches) for s in billing.origin_usage(db.session, acme.id, *NOV)] == [
        ("lms-a.example", 2, 2), ("lms-b.example", 1, 1)]


def test_the_anonymisation_switch_rekeys_the_day_rows(app, make_client):
    """A learner stored both ways (pseudonymised, then plain) becomes one row on the switch: her
    day rows move onto it and add up, as her days of use do."""
    acme, _ = make_client(name="Acme", anonymised=True)
    pseudonymiser, directory = app.extensions["pseudonymiser"], app.extensions["client_directory"]

    def send(kind: str, when: dt.datetime, links: bool = True):
        snap = client_service.snapshot(db.session, acme)
        snap = client_service.ClientSnapshot(**{**snap.__dict__, "links_pseudonyms": links})
        record_beacon(db.session, pseudonymiser, directory, snap,
                      Beacon(course="Fire Safety", student_id="jane@example.com", student_name="Doe, Jane",
                             event=kind, package="p1"), lms_host="lms.example", now=when)

    send("launch", at(2, 9))
    send("completed", at(2, 9, 30))
    acme.anonymised = False
    db.session.commit()
    send("launch", at(2, 10), links=False)        # a plain row beside her pseudonymised one (a race)
    send("completed", at(2, 8), links=False)
    assert billing.package_usage(db.session, acme.id, *NOV)[0].unique_users == 2

    done = anonymisation.switch_mode(db.session, pseudonymiser, acme, anonymised=True, actor="test")
    assert done["learners_merged"] == 1
    (learner_id,) = db.session.scalars(select(Learner.id).where(Learner.client_id == acme.id))
    (source,) = db.session.scalars(select(DailySource).where(DailySource.client_id == acme.id))
    assert (source.learner_id, source.launches, source.first_at, source.last_at) == (
        learner_id, 2, at(2, 8), at(2, 10))
    (outcome,) = db.session.scalars(select(DailyOutcome).where(DailyOutcome.client_id == acme.id))
    assert (outcome.learner_id, outcome.kind, outcome.first_at, outcome.last_at) == (
        learner_id, "completed", at(2, 8), at(2, 9, 30))
    assert [(s.source, s.unique_users, s.launches) for s in billing.package_usage(db.session, acme.id, *NOV)] == [
        ("p1", 1, 2)]


def test_the_migration_fills_the_day_rows_from_the_events(database_url, client, runner, make_client, make_staff):
    """Downgrade (the tables go) and upgrade again (filled from the events): the same rows, and
    the same figures on every face."""
    from flask_migrate import downgrade, upgrade

    acme, key = make_client(name="Acme")
    other, other_key = make_client(name="Other")
    send_all(client, runner, acme, key)
    assert post(client, other_key, at(2, 9), "zed", "Course Z", "passed", "https://lms-z.example", "pz") == 204
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    before = {c.id: (rows(DailySource, c.id), rows(DailyOutcome, c.id)) for c in (acme, other)}
    figures = faces(client, acme, token)
    db.session.remove()
    downgrade(directory=str(ROOT / "migrations"), revision="7c3f2a9e4b10")
    assert not {"daily_sources", "daily_outcomes"} & set(db.inspect(db.engine).get_table_names())
    upgrade(directory=str(ROOT / "migrations"))
    db.engine.dispose()
    after = {c.id: (rows(DailySource, c.id), rows(DailyOutcome, c.id)) for c in (acme, other)}
    assert after == before and all(sources and outcomes for sources, outcomes in after.values())
    assert faces(client, acme, token) == figures


def _count(model) -> int:
    """Counted in a transaction of its own, ended at once (an open one would hold a lock the
    rename above waits for on PostgreSQL)."""
    db.session.rollback()
    count = db.session.scalar(select(func.count()).select_from(model))
    db.session.rollback()
    return count


def _course_and_day(client_row, title: str, day: int) -> tuple:
    course_id = db.session.scalar(select(Course.id).where(Course.client_id == client_row.id, Course.title == title))
    return course_id, dt.date(2026, 11, day)
