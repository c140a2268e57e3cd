"""Faults under load through a real gunicorn: a worker killed with kill -9 while beacons
arrive loses no acknowledged beacon, and beacons retried after a failure are stored once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import ROOT, TEST_PARAMS, LiveServer, free_port, require
from flask_migrate import upgrade
from sqlalchemy import create_engine, select, text

from app import create_app
from app.clients import services as client_service
from app.extensions import db
from app.models import Event

pytestmark = pytest.mark.e2e

BEACONS = 240


def _workers(master_pid: int) -> list[int]:
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_beacon(own_live_server, make_client, tls_ca):
    _client, key = make_client(name="Acme")
    event_ids = [str(uuid.uuid4()) for _ in range(BEACONS)]
    acknowledged: set[str] = set()
    failures = 0
    lock = threading.Lock()
    killed = threading.Event()

    def send(event_id: str) -> None:
        nonlocal failures
        body = json.dumps({"key": key, "course": "Safety", "student_id": f"s-{event_id[:6]}",
                           "student_name": "Learner", "event_id": event_id})
        for _attempt in range(20):  # as the tracker does: retry until acknowledged
            try:
                answer = requests.post(own_live_server.url + "/api/v1/beacons", data=body,
                                       headers={"Content-Type": "text/plain", "Connection": "close"},
                                       verify=tls_ca["ca"], timeout=20)
                if answer.status_code == 204:
                    with lock:
                        acknowledged.add(event_id)
                    return
            except requests.RequestException:
                pass
            with lock:
                failures += 1
            time.sleep(0.2)

    def killer() -> None:
        while len(acknowledged) < BEACONS // 3:
            time.sleep(0.02)
        os.kill(_workers(own_live_server.process.pid)[0], signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, event_ids))
    thread.join(10)
    assert killed.is_set()
    db.session.rollback()
    stored = list(db.session.scalars(select(Event.event_id)))
    print(f"kill -9 of a worker: {len(acknowledged)} acknowledged, {failures} failed attempts retried")
    assert len(acknowledged) == BEACONS
    # Every acknowledged beacon is stored, each exactly once despite the retries.
    assert sorted(str(e) for e in stored) == sorted(acknowledged)


# --- the database stopped and started under load ------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb, pg_ctl), as a non-root user when run as root."""

    def __init__(self, folder):
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        self.bin = bins[-1] if bins else None
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0 and self.bin:
            shutil.chown(folder, "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> ThrowawayPostgres:
        self.run(f"{self.bin}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self.start()

    def start(self) -> ThrowawayPostgres:
        self.run(f"{self.bin}/pg_ctl", "-D", str(self.data), "-w", "-l", str(self.folder / "pg.log"), "-o",
                 f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        return self

    def stop(self) -> None:
        self.run(f"{self.bin}/pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")


@pytest.fixture
def throwaway_postgres():
    import shutil
    import tempfile
    from pathlib import Path

    # Straight under /tmp: pytest's own temporary folders are closed to the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="tracker-pg-"))
    os.chmod(folder, 0o755)
    cluster = ThrowawayPostgres(folder)
    require(cluster.bin is not None, "PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin)")
    cluster.init()
    yield cluster
    try:
        cluster.stop()
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.one_database  # its own throwaway PostgreSQL in either pass
def test_database_stopped_and_started_under_load(throwaway_postgres, tls_ca, tmp_path):
    from conftest import _config

    url = throwaway_postgres.url
    app = create_app(_config(url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        _client, key = client_service.create_client(db.session, name="Acme", actor="test", params=TEST_PARAMS)
        db.engine.dispose()
    server = LiveServer(url, tls_ca, tmp_path / "gunicorn.log").start()
    answers: list[int] = []
    retry_after: list[str] = []
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop_at = BEACONS // 3

    def send(event_id: str) -> None:
        body = json.dumps({"key": key, "course": "Safety", "student_id": f"s-{event_id[:6]}",
                           "student_name": "Learner", "event_id": event_id})
        for _attempt in range(60):
            try:
                answer = requests.post(server.url + "/api/v1/beacons", data=body,
                                       headers={"Content-Type": "text/plain"}, verify=tls_ca["ca"], timeout=20)
                with lock:
                    answers.append(answer.status_code)
                    if answer.status_code == 503:
                        retry_after.append(answer.headers.get("Retry-After", ""))
                if answer.status_code == 204:
                    with lock:
                        acknowledged.add(event_id)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)

    def outage() -> None:
        while len(acknowledged) < stop_at:
            time.sleep(0.02)
        throwaway_postgres.stop()
        time.sleep(3)
        throwaway_postgres.start()

    event_ids = [str(uuid.uuid4()) for _ in range(BEACONS)]
    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, event_ids))
        thread.join(30)
        health = requests.get(server.url + "/healthz", verify=tls_ca["ca"], timeout=10)
    finally:
        server.stop()
    print(f"database outage: {answers.count(503)} answers 503, {answers.count(204)} 204, others "
          f"{sorted(set(answers) - {204, 503})}")
    assert answers.count(503) >= 1 and all(value.isdigit() and int(value) > 0 for value in retry_after)
    assert set(answers) <= {204, 503}, "nothing but stored or try-again-later"
    assert health.status_code == 200
    assert len(acknowledged) == BEACONS
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = [str(row[0]) for row in conn.execute(text("SELECT event_id FROM events"))]
    engine.dispose()
    assert sorted(stored) == sorted(acknowledged)  # retried beacons stored once
    log = server.log_path.read_text(errors="replace")
    assert '" 500 ' not in log
