"""What the outbox costs the beacon path: `.venv/bin/python bench/outbox_cost.py`.

Times ``record_beacon`` in-process (no HTTP, no TLS: the service alone, where the
outbox INSERT is added) with the outbox hook on and off, in alternating rounds on
the same database, on SQLite (a file) and on PostgreSQL (a scratch database on
127.0.0.1:5432, created and dropped here). Two beacon mixes: launches by returning
learners (the hook tries an ``enrolled`` INSERT that conflicts and does nothing)
and first launches of new learners (the hook inserts an outbox row).
Reports the median microseconds per beacon and the ratio on/off. Never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from app import create_app  # noqa: E402
from app.clients import services as client_service  # noqa: E402
from app.extensions import db  # noqa: E402
from app.identity.student_ids import PseudonymParams  # noqa: E402
from app.ingest import beacons as ingest  # noqa: E402
from app.outbound import outbox  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _app(url):
    app = create_app({"ENV": {"APP_ENV": "test", "DATABASE_URL": url, "SECRET_KEY": "bench" * 8,
                              "PSEUDONYM_SECRET": "bench" * 8}})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    return app


STATEMENTS = [0]


def _count(*args, **kwargs):
    STATEMENTS[0] += 1


def _round(app, client, n, new_learners, hook_on, counter):
    original = outbox.enqueue_for_beacon
    if not hook_on:
        ingest.outbox.enqueue_for_beacon = lambda *a, **k: None
    try:
        snap = client_service.snapshot(db.session, client)
        times = []
        for i in range(n):
            counter[0] += 1
            student = f"new-{counter[0]}" if new_learners else f"ret-{i % 50}"
            beacon = ingest.Beacon(course="Fire Safety", student_id=student, student_name="Doe, Jane",
                                   event_id=uuid.uuid4())
            started = time.perf_counter()
            ingest.record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"],
                                 snap, beacon, lms_host="lms.example.com", now=dt.datetime.now(dt.UTC))
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6, STATEMENTS[0] / n
    finally:
        STATEMENTS[0] = 0
        ingest.outbox.enqueue_for_beacon = original


def run(url, label, rounds, n):
    app = _app(url)
    with app.app_context():
        from sqlalchemy import event

        event.listen(db.engine, "before_cursor_execute", _count)
        client, _ = client_service.create_client(db.session, name="Bench", actor="bench",
                                                 params=PseudonymParams(1, 256, 1))
        counter = [0]
        for new in (False, True):
            _round(app, client, n, new, True, counter)  # warm-up: returning learners exist, caches filled
            on, off = [], []
            for _ in range(rounds):
                off.append(_round(app, client, n, new, False, counter))
                on.append(_round(app, client, n, new, True, counter))
            mix = "new learners" if new else "returning learners"
            m_on, m_off = statistics.median(t for t, _ in on), statistics.median(t for t, _ in off)
            print(f"{label:10} {mix:18} without outbox {m_off:7.0f} µs  with {m_on:7.0f} µs  "
                  f"ratio {m_on / m_off:.2f}   statements per beacon {off[0][1]:.1f} -> {on[0][1]:.1f}")
        db.session.remove()
        db.engine.dispose()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--beacons", type=int, default=300)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{folder}/bench.db", "SQLite", args.rounds, args.beacons)
    if args.only != "sqlite":
        name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", "PostgreSQL", args.rounds, args.beacons)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
