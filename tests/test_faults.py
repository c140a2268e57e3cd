"""Faults under load through a real gunicorn: a worker killed with kill -9 while beacons
arrive loses no acknowledged beacon, and beacons retried after a failure are stored once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.models import Event

pytestmark = pytest.mark.e2e

BEACONS = 240


def _workers(master_pid: int) -> list[int]:
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_beacon(live_server, make_client, tls_ca):
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
                answer = requests.post(live_server.url + "/api/v1/beacons", data=body,
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
        os.kill(_workers(live_server.process.pid)[0], signal.SIGKILL)
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
