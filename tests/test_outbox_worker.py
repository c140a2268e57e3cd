"""The real worker process, ``flask --app wsgi outbox run``: kill -9 in the middle of a
delivery loses nothing (at most a duplicate under the same webhook-id); SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from conftest import ROOT, TEST_SECRETS, beacon_body
from outbox_helpers import Receiver
from sqlalchemy import select

from app.extensions import db
from app.outbound.models import OutboxDelivery, OutboxEvent

BEACONS = "/api/v1/beacons"


def _worker(database_url, tls_ca, log_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env.update({"APP_ENV": "test", **TEST_SECRETS, "DATABASE_URL": database_url, "WEBHOOK_CA_FILE": tls_ca["ca"],
                "OUTBOX_LEASE_SECONDS": "2"})
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "run", "--poll", "0.2"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(condition, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _states():
    db.session.expire_all()
    return [d.status for d in db.session.scalars(select(OutboxDelivery))]


def test_kill_9_mid_delivery_loses_nothing(app, client, runner, make_client, database_url, tls_ca, tmp_path):
    _, key = make_client(name="Acme")
    hook = Receiver(tls_ca, hold=threading.Event())
    try:
        result = runner.invoke(args=["webhook", "add", "--url", hook.url, "--json"])
        hook.secret = json.loads(result.output)["secret"]
        for i in range(4):
            assert client.post(BEACONS, json=beacon_body(key, student_id=f"s-{i}")).status_code == 204
        db.session.remove()

        first = _worker(database_url, tls_ca, tmp_path / "worker.log")
        try:
            assert hook.arrived.wait(60), "the worker delivered nothing"
            os.killpg(first.pid, signal.SIGKILL)  # mid-delivery: the receiver still holds the first request
            first.wait(10)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        hook.hold.set()
        second = _worker(database_url, tls_ca, tmp_path / "worker.log")
        try:
            _wait(lambda: _states() and all(s == "delivered" for s in _states()), "every delivery")
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, "SIGTERM stops the worker cleanly"
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
    finally:
        hook.stop()

    events = set(db.session.scalars(select(OutboxEvent.webhook_id)))
    assert len(events) == 4
    delivered = hook.delivered_ids()
    assert set(delivered) == events, "nothing lost"
    duplicates = [w for w in set(delivered) if delivered.count(w) > 1]
    assert len(delivered) - len(events) <= 1 and duplicates in ([], [hook.received[0].webhook_id]), \
        "at most the interrupted delivery again, under the same webhook-id"
    assert all(r.verified for r in hook.received)


def test_two_workers_share_the_work_and_send_each_delivery_once(app, client, runner, make_client, tls_ca,
                                                                database_kind):
    """PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock makes one of two claims fail and retry."""
    from sqlalchemy.exc import OperationalError

    from app.outbound import outbox

    _, key = make_client(name="Acme")
    hook = Receiver(tls_ca)
    try:
        hook.secret = json.loads(runner.invoke(args=["webhook", "add", "--url", hook.url, "--json"]).output)["secret"]
        for i in range(30):
            client.post(BEACONS, json=beacon_body(key, student_id=f"s-{i}"))
        settings = outbox.Settings.from_config({**app.config, "WEBHOOK_CA_FILE": tls_ca["ca"]})
        db.session.remove()
        failures = []

        def work():
            with app.app_context():
                for _ in range(200):
                    try:
                        outbox.run_once(db.session, settings)
                    except OperationalError:
                        db.session.rollback()
                    except Exception as exc:  # an IntegrityError: both fanned out the same event
                        db.session.rollback()
                        failures.append(type(exc).__name__)
                    if len(hook.delivered_ids()) >= 30 and not db.session.scalar(
                            select(OutboxDelivery.id).where(OutboxDelivery.status != "delivered")):
                        break
                db.session.remove()

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        hook.stop()
    delivered = hook.delivered_ids()
    assert len(delivered) == 30 and len(set(delivered)) == 30, "each delivery sent exactly once"
    assert set(failures) <= {"IntegrityError"}
