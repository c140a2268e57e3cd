"""Durable group commit: concurrent beacons of one process share a transaction, each answered after it.

The in-process tests hold the first batch open until the next beacons have
queued behind it, so the second batch holds them all (no timing luck): then
a failure in that batch answers 503 to each of its beacons and stores none,
and an event ID repeated inside it is stored once. The last test kills a
gunicorn worker (gthread, several threads) with SIGKILL under concurrent load
and finds every acknowledged beacon stored.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

from conftest import LiveServer, beacon_body, require
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.ingest import batch as ingest_batch
from app.ingest import group_commit
from app.ingest.beacons import committer_for
from app.models import Client, DailyUsage, Event, Learner

URL = "/api/v1/beacons"


class Gate:
    """Holds the first batch inside its transaction until ``waiting`` beacons queued behind it."""

    def __init__(self, app, monkeypatch, waiting: int):
        self.committer = committer_for(app)
        self.waiting = waiting
        self.batches: list[list[uuid.UUID]] = []
        self.entered = threading.Event()
        real = group_commit.write_batch

        def gated(connection, pseudonymiser, directory, batch):
            self.batches.append([p.event_id for p in batch])
            if len(self.batches) == 1:
                self.entered.set()
                deadline = time.monotonic() + 60
                while len(self.committer._queue) < self.waiting and time.monotonic() < deadline:
                    time.sleep(0.01)
            return real(connection, pseudonymiser, directory, batch)

        monkeypatch.setattr(group_commit, "write_batch", gated)


def post_all(app, first: dict, bodies: list[dict], gate: Gate) -> tuple[int, list[int]]:
    """POST ``first`` alone, then ``bodies`` concurrently while the first batch is held open."""
    answers: dict[int, int] = {}

    def post(n: int, body: dict) -> None:
        answers[n] = app.test_client().post(URL, json=body).status_code

    threads = [threading.Thread(target=post, args=(-1, first))]
    threads[0].start()
    assert gate.entered.wait(30)
    threads += [threading.Thread(target=post, args=(n, body)) for n, body in enumerate(bodies)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers[-1], [answers[n] for n in range(len(bodies))]


def stored_event_ids() -> set[uuid.UUID]:
    db.session.rollback()
    return set(db.session.scalars(select(Event.event_id)))


def test_beacons_queued_behind_a_batch_commit_together(app, make_client, monkeypatch):
    _, key = make_client()
    gate = Gate(app, monkeypatch, waiting=5)
    bodies = [beacon_body(key, student_id=f"s-{n}") for n in range(5)]
    first_status, statuses = post_all(app, beacon_body(key, student_id="s-first"), bodies, gate)
    assert first_status == 204 and statuses == [204] * 5
    assert len(gate.batches) == 2 and len(gate.batches[1]) == 5
    assert stored_event_ids() == {uuid.UUID(b["event_id"]) for b in bodies} | {gate.batches[0][0]}
    assert db.session.scalar(select(func.sum(DailyUsage.launches))) == 6


def test_a_failed_batch_answers_503_to_every_beacon_and_stores_none(app, make_client, monkeypatch):
    _, key = make_client()
    gate = Gate(app, monkeypatch, waiting=4)
    bodies = [beacon_body(key, student_id=f"s-{n}") for n in range(4)]
    doomed = uuid.UUID(bodies[3]["event_id"])
    real = ingest_batch._write_beacon

    def fails_on_the_last(connection, statements, pseudonymiser, directory, pending):
        if pending.event_id == doomed:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(connection, statements, pseudonymiser, directory, pending)

    monkeypatch.setattr(ingest_batch, "_write_beacon", fails_on_the_last)
    first_status, statuses = post_all(app, beacon_body(key, student_id="s-first"), bodies, gate)
    assert first_status == 204
    assert statuses == [503] * 4
    assert len(gate.batches) == 2 and len(gate.batches[1]) == 4
    # The three written before the failure were rolled back with it: nothing of the batch remains.
    assert stored_event_ids() == {gate.batches[0][0]}
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 1
    assert db.session.scalar(select(func.sum(DailyUsage.launches))) == 1


def test_a_duplicate_event_id_inside_one_batch_is_stored_once(app, make_client, monkeypatch):
    _, key = make_client()
    gate = Gate(app, monkeypatch, waiting=4)
    shared = str(uuid.uuid4())
    bodies = [beacon_body(key, student_id="s-1", event_id=shared) for _ in range(3)]
    bodies.append(beacon_body(key, student_id="s-2"))
    first_status, statuses = post_all(app, beacon_body(key, student_id="s-first"), bodies, gate)
    assert first_status == 204 and statuses == [204] * 4
    assert len(gate.batches[1]) == 4
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event).where(Event.event_id == uuid.UUID(shared))) == 1
    assert db.session.scalar(select(func.sum(DailyUsage.launches))) == 3


def test_the_mode_is_read_in_the_beacons_transaction_not_from_the_cache(app, make_client):
    """A switch made by another process (this one's cache not cleared): no plain ID is stored after it."""
    app.extensions["client_directory"].ttl = 3600
    acme, key = make_client(name="Acme")
    client = app.test_client()
    assert client.post(URL, json=beacon_body(key, student_id="before-switch")).status_code == 204
    db.session.rollback()
    db.session.get(Client, acme.id).anonymised = True  # as another process's switch would
    db.session.commit()
    assert client.post(URL, json=beacon_body(key, student_id="after-switch@example.com",
                                             student_name="Plain Name")).status_code == 204
    db.session.rollback()
    identities = set(db.session.scalars(select(Learner.identity)))
    assert "before-switch" in identities
    assert not any("after-switch" in i for i in identities)
    assert "Plain Name" not in set(db.session.scalars(select(Learner.name)))
    assert "Plain Name" not in set(db.session.scalars(select(Event.learner_name)))


class PatientServer(LiveServer):
    """Two threaded workers may take a while to boot on a loaded machine."""

    def wait_ready(self, timeout: float = 120) -> None:
        super().wait_ready(timeout)


def _worker_pids(master: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{master}/task"):
        with open(f"/proc/{master}/task/{task}/children") as fh:
            found += [int(p) for p in fh.read().split()]
    return found


def test_kill_9_of_a_threaded_worker_under_load_loses_no_acknowledged_beacon(database_url, tls_ca, tmp_path, app,
                                                                              make_client):
    import requests

    _, key = make_client()
    server = PatientServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env={
        "GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "4", "WEB_CONCURRENCY": "2"})
    acknowledged: list[uuid.UUID] = []
    answers: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                body = beacon_body(key, student_id=f"s-{uuid.uuid4().hex[:6]}")
                try:
                    status = http.post(server.url + URL, json=body, verify=tls_ca["ca"], timeout=10).status_code
                except requests.RequestException:
                    status = 0  # the killed worker's connections: not acknowledged, the tracker retries
                with lock:
                    answers.append(status)
                    if status == 204:
                        acknowledged.append(uuid.UUID(body["event_id"]))

    threads = [threading.Thread(target=load) for _ in range(8)]
    try:
        server.start()
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        victims = _worker_pids(server.process.pid)
        require(len(victims) == 2, "gunicorn should run two workers")
        os.kill(victims[0], signal.SIGKILL)
        killed_at = len(answers)
        while len(answers) < killed_at + 80 and time.monotonic() < deadline + 60:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(30)
        server.stop()
    assert len(acknowledged) >= 40
    assert set(answers) <= {204, 503, 0}, sorted(set(answers))
    missing = set(acknowledged) - stored_event_ids()
    assert not missing, f"{len(missing)} acknowledged beacons lost"
