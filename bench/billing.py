"""Billing speed: the usage API and the billing page for one client-month, as the data grows.

    .venv/bin/python bench/billing.py                        # SQLite and PostgreSQL, 1M then 3M events (~15 min)
    .venv/bin/python bench/billing.py --scale 10             # the full 1M -> 10M run (~40 min on 2 cores)
    .venv/bin/python bench/billing.py --db sqlite --scale 10 # one database

Seeds ``--events`` (default one million) events over a year for ``--clients``
(default 100) clients, bulk-inserted in SQL straight into the tables, with the
per-day rows (daily_usage, daily_sources, daily_outcomes) aggregated from those events (so they agree), then times the
usage API and the billing page (in-process Flask test client, so the figure
is the app plus the database, not the network) for one month of client 1.
Then it adds events for the *other* clients until there are ``--scale`` times
as many in total, and times the same month again: client 1's own data does
not change, so the time should not either (target: ratio <= 1.3, < 200 ms).

PostgreSQL comes from BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the
local server at 127.0.0.1:5432; a scratch database is created and dropped.
Results are printed and written to bench/results/billing-<db>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

YEAR_START = dt.date(2025, 12, 1)          # a year of data: 2025-12-01 .. 2026-11-30
DAYS = 365
MONTH = (dt.date(2026, 6, 1), dt.date(2026, 6, 30))
COURSES_PER_CLIENT = 10
LEARNERS_PER_CLIENT = 1000
CHUNK = 250_000
SECRETS = {"SECRET_KEY": "bench-secret-key-0123456789", "PSEUDONYM_SECRET": "bench-pseudonym-secret-0123456789"}
PASSWORD = "bench password long enough"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- schema and seed ---------------------------------------------------------------------


def make_app(url: str):
    from app import create_app

    return create_app({
        "ENV": {"APP_ENV": "test", "DATABASE_URL": url, **SECRETS},
        "PSEUDONYM_TIME_COST": 1, "PSEUDONYM_MEMORY_KIB": 256, "PSEUDONYM_PARALLELISM": 1,
        "LOGIN_RATE_LIMIT": "100000/minute",
    })


def migrate(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))


def seed_reference_data(conn, kind: str, clients: int) -> None:
    """Clients, their courses and learners, with ids 1..n in order (fresh database)."""
    now = dt.datetime.now(dt.UTC)
    ts = now.replace(tzinfo=None) if kind == "sqlite" else now
    conn.execute(text(
        "INSERT INTO clients (id, uid, slug, name, active, anonymised, salt, pseudonym_time_cost, "
        "pseudonym_memory_kib, pseudonym_parallelism, licence, allowed_origins, created_at, updated_at) "
        "VALUES (:id, :uid, :slug, :name, :active, :anonymised, :salt, 1, 256, 1, 'subscription', '[]', "
        ":ts, :ts)"),
        [{"id": c, "uid": uuid.uuid4().hex if kind == "sqlite" else uuid.uuid4(), "slug": f"client-{c}",
          "name": f"Client {c}", "active": True, "anonymised": False, "salt": os.urandom(16),
          "ts": ts} for c in range(1, clients + 1)])
    # 800 seats a calendar month: a licence term (terms are the only home of a seat limit).
    today = now.date()
    conn.execute(text(
        "INSERT INTO licence_terms (client_id, starts_on, ends_on, seat_limit, seat_window, at_limit, after_expiry, "
        "created_at) VALUES (:client, :start, :end, 800, 'month', 'record', 'record', :ts)"),
        [{"client": c, "start": today - dt.timedelta(days=365), "end": today + dt.timedelta(days=365),
          "ts": ts} for c in range(1, clients + 1)])
    conn.execute(text("INSERT INTO courses (id, client_id, title, created_at) VALUES (:id, :client, :title, :ts)"),
                 [{"id": (c - 1) * COURSES_PER_CLIENT + k + 1, "client": c, "title": f"Course {k + 1:02d}", "ts": ts}
                  for c in range(1, clients + 1) for k in range(COURSES_PER_CLIENT)])
    conn.execute(text(
        "INSERT INTO learners (id, client_id, identity, pseudonymised, name, first_seen, last_seen) "
        "VALUES (:id, :client, :identity, :pseudonymised, :name, :ts, :ts)"),
        [{"id": (c - 1) * LEARNERS_PER_CLIENT + n + 1, "client": c, "identity": f"c{c}-learner-{n}",
          "pseudonymised": False, "name": f"Learner {n} of {c}", "ts": ts}
         for c in range(1, clients + 1) for n in range(LEARNERS_PER_CLIENT)])
    if kind == "postgresql":
        for table in ("clients", "courses", "learners"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))


def insert_events(conn, kind: str, count: int, first_client: int, clients: int) -> None:
    """``count`` events spread evenly over clients first_client .. first_client+clients-1 and the year."""
    params = {"n": count, "clients": clients, "first": first_client, "courses": COURSES_PER_CLIENT,
              "learners": LEARNERS_PER_CLIENT, "days": DAYS}
    if kind == "sqlite":
        epoch = int(dt.datetime.combine(YEAR_START, dt.time(), tzinfo=dt.UTC).timestamp())
        conn.execute(text(f"""
            INSERT INTO events (event_id, client_id, course_id, learner_id, kind, received_at, learner_name, lms_host)
            WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1),
            picks AS (SELECT :first + i % :clients AS client,
                             abs(random()) % :courses AS course, abs(random()) % :learners AS learner,
                             abs(random()) % (:days * 86400) AS second, abs(random()) % 10 AS roll FROM seq)
            SELECT lower(hex(randomblob(16))), client, (client - 1) * :courses + course + 1,
                   (client - 1) * :learners + learner + 1,
                   CASE WHEN roll = 0 THEN 'completed' ELSE 'launch' END,
                   datetime({epoch} + second, 'unixepoch') || '.000000', NULL, 'lms.example.com'
            FROM picks"""), params)
    else:
        conn.execute(text("""
            INSERT INTO events (event_id, client_id, course_id, learner_id, kind, received_at, learner_name, lms_host)
            SELECT gen_random_uuid(), client, (client - 1) * :courses + course + 1,
                   (client - 1) * :learners + learner + 1,
                   CASE WHEN roll = 0 THEN 'completed' ELSE 'launch' END,
                   CAST(:start AS timestamptz) + make_interval(secs => second), NULL, 'lms.example.com'
            FROM (SELECT :first + i % :clients AS client, floor(random() * :courses)::int AS course,
                         floor(random() * :learners)::int AS learner,
                         floor(random() * :days * 86400)::int AS second, floor(random() * 10)::int AS roll
                  FROM generate_series(0, :n - 1) AS g(i)) AS picks"""),
            {**params, "start": f"{YEAR_START.isoformat()}T00:00:00+00:00"})


def aggregate_daily_usage(conn, kind: str, after_event_id: int) -> None:
    """daily_usage from the events with id > after_event_id, merged into existing rows: consistent by construction."""
    if kind == "sqlite":
        day, merge_first, merge_last = ("substr(received_at, 1, 10)", "min(daily_usage.first_at, excluded.first_at)",
                                        "max(daily_usage.last_at, excluded.last_at)")
    else:
        day, merge_first, merge_last = ("CAST((received_at AT TIME ZONE 'UTC') AS date)",
                                        "LEAST(daily_usage.first_at, excluded.first_at)",
                                        "GREATEST(daily_usage.last_at, excluded.last_at)")
    conn.execute(text(f"""
        INSERT INTO daily_usage (client_id, course_id, learner_id, day, launches, completions, first_at, last_at)
        SELECT client_id, course_id, learner_id, {day},
               sum(CASE WHEN kind = 'launch' THEN 1 ELSE 0 END),
               sum(CASE WHEN kind IN ('completed', 'passed') THEN 1 ELSE 0 END),
               min(received_at), max(received_at)
        FROM events WHERE id > :after GROUP BY client_id, course_id, learner_id, {day}
        ON CONFLICT (client_id, course_id, learner_id, day) DO UPDATE SET
            launches = daily_usage.launches + excluded.launches,
            completions = daily_usage.completions + excluded.completions,
            first_at = {merge_first}, last_at = {merge_last}"""), {"after": after_event_id})
    # The per-day source and status rows the breakdown by origin/package and the learners'
    # statuses read, as ingest writes them.
    conn.execute(text(f"""
        INSERT INTO daily_sources (client_id, course_id, learner_id, day, lms_host, package_id, launches,
                                   first_at, last_at)
        SELECT client_id, course_id, learner_id, {day}, coalesce(lms_host, ''), coalesce(package_id, ''),
               sum(CASE WHEN kind = 'launch' THEN 1 ELSE 0 END), min(received_at), max(received_at)
        FROM events WHERE id > :after
        GROUP BY client_id, course_id, learner_id, {day}, coalesce(lms_host, ''), coalesce(package_id, '')
        ON CONFLICT (client_id, course_id, learner_id, day, lms_host, package_id) DO UPDATE SET
            launches = daily_sources.launches + excluded.launches,
            first_at = {merge_first.replace("daily_usage", "daily_sources")},
            last_at = {merge_last.replace("daily_usage", "daily_sources")}"""), {"after": after_event_id})
    conn.execute(text(f"""
        INSERT INTO daily_outcomes (client_id, course_id, learner_id, day, kind, first_at, last_at)
        SELECT client_id, course_id, learner_id, {day}, kind, min(received_at), max(received_at)
        FROM events WHERE id > :after AND kind IN ('completed', 'passed', 'failed')
        GROUP BY client_id, course_id, learner_id, {day}, kind
        ON CONFLICT (client_id, course_id, learner_id, day, kind) DO UPDATE SET
            first_at = {merge_first.replace("daily_usage", "daily_outcomes")},
            last_at = {merge_last.replace("daily_usage", "daily_outcomes")}"""), {"after": after_event_id})


def add_events(engine, kind: str, count: int, first_client: int, clients: int) -> None:
    with engine.begin() as conn:
        after = conn.execute(text("SELECT coalesce(max(id), 0) FROM events")).scalar_one()
    done = 0
    while done < count:
        step = min(CHUNK, count - done)
        with engine.begin() as conn:
            insert_events(conn, kind, step, first_client, clients)
        done += step
        log(f"  {done:,} / {count:,} events")
    with engine.begin() as conn:
        aggregate_daily_usage(conn, kind, after)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def sizes(engine) -> dict:
    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("events", "daily_usage", "learners")}


# --- timing --------------------------------------------------------------------------------


def timed(app, runs: int) -> dict:
    from app.extensions import db
    from app.staff import services as staff_service

    with app.app_context():
        from sqlalchemy import select

        from app.models import StaffUser

        user = db.session.scalar(select(StaffUser).where(StaffUser.email == "bench@vendor.example"))
        if user is None:
            user = staff_service.create_staff(db.session, email="bench@vendor.example", role="billing",
                                              password=PASSWORD, client=None, actor="bench")
        token = staff_service.create_token(db.session, user, actor="bench")
        db.session.remove()

    http = app.test_client()
    page = http.get("/login", base_url="https://localhost")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True)).group(1)
    login = http.post("/login", base_url="https://localhost", headers={"Referer": "https://localhost/login"},
                      data={"email": "bench@vendor.example", "password": PASSWORD, "csrf_token": csrf})
    assert login.status_code == 302, login.status_code

    start, end = MONTH
    targets = {
        "usage_api": (f"/api/v1/clients/client-1/usage?from={start}&to={end}",
                      {"Authorization": f"Bearer {token}"}),
        "billing_page": (f"/billing/client-1?from={start}&to={end}", {}),
    }
    results = {}
    for name, (url, headers) in targets.items():
        samples = []
        for i in range(runs + 3):
            began = time.perf_counter()
            response = http.get(url, headers=headers, base_url="https://localhost")
            elapsed = (time.perf_counter() - began) * 1000
            assert response.status_code == 200, (url, response.status_code)
            if i >= 3:   # warm-up
                samples.append(elapsed)
        samples.sort()
        # The minimum is the figure least disturbed by other work on a shared machine.
        results[name] = {"median_ms": round(statistics.median(samples), 1),
                         "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
                         "min_ms": round(samples[0], 1)}
    api = http.get(targets["usage_api"][0], headers=targets["usage_api"][1], base_url="https://localhost").get_json()
    results["client_1_month"] = {"unique_users": api["unique_users"], "launches": api["launches"]}
    return results


# --- one database --------------------------------------------------------------------------


def postgres_url() -> str:
    url = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
           or "postgresql://postgres@127.0.0.1:5432/postgres")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def run(kind: str, args) -> dict:
    scratch = None
    if kind == "sqlite":
        scratch = Path(tempfile.mkdtemp(prefix="billing-bench-"))
        url = f"sqlite:///{scratch / 'bench.db'}"
    else:
        admin_url = make_url(postgres_url())
        name = f"billing_bench_{os.getpid()}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        log(f"{kind}: migrating")
        app = make_app(url)
        migrate(app)
        engine = create_engine(url)
        if kind == "sqlite":
            from sqlalchemy import event

            @event.listens_for(engine, "connect")
            def _fast_load(dbapi_connection, _record):
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=OFF")     # seeding only; the app keeps FULL
                cursor.execute("PRAGMA cache_size=-1000000")
                cursor.close()

        with engine.begin() as conn:
            seed_reference_data(conn, kind, args.clients)
        log(f"{kind}: seeding {args.events:,} events for {args.clients} clients")
        began = time.monotonic()
        add_events(engine, kind, args.events, 1, args.clients)
        seed_s = time.monotonic() - began
        base_sizes = sizes(engine)
        log(f"{kind}: seeded in {seed_s:.0f} s: {base_sizes}; timing")
        base = timed(app, args.runs)
        log(f"{kind}: 1x {base}")

        grown_events = args.events * (args.scale - 1)
        grown = grown_sizes = None
        if grown_events > 0:
            log(f"{kind}: adding {grown_events:,} events for clients 2..{args.clients} (x{args.scale} in total)")
            began = time.monotonic()
            add_events(engine, kind, grown_events, 2, args.clients - 1)
            grow_s = time.monotonic() - began
            grown_sizes = sizes(engine)
            log(f"{kind}: grown in {grow_s:.0f} s: {grown_sizes}; timing")
            grown = timed(app, args.runs)
            log(f"{kind}: x{args.scale} {grown}")
        engine.dispose()
        with app.app_context():
            from app.extensions import db

            db.engine.dispose()
        result = {"database": kind, "clients": args.clients, "events": base_sizes["events"],
                  "daily_usage_rows": base_sizes["daily_usage"], "month": [d.isoformat() for d in MONTH],
                  "base": base, "scale": args.scale, "grown_events": grown_sizes and grown_sizes["events"],
                  "grown_daily_usage_rows": grown_sizes and grown_sizes["daily_usage"], "grown": grown}
        if grown:
            assert grown["client_1_month"] == base["client_1_month"], "client 1's figures must not change"
            result["ratio"] = {k: round(grown[k]["median_ms"] / base[k]["median_ms"], 2)
                               for k in ("usage_api", "billing_page")}
            result["ratio_of_minimums"] = {k: round(grown[k]["min_ms"] / base[k]["min_ms"], 2)
                                           for k in ("usage_api", "billing_page")}
        return result
    finally:
        if scratch and args.keep:
            log(f"kept {url}")
        elif scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the first round")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--scale", type=int, default=3,
                        help="total events in the second round, as a multiple (10 for the full run; seeding "
                             "9M more events takes ~12 min on SQLite and ~25 min on PostgreSQL here)")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per target (after 3 warm-ups)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file (to look at query plans)")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    results = []
    for kind in kinds:
        result = run(kind, args)
        results.append(result)
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"billing-{kind}.json").write_text(json.dumps(result, indent=2))
    print("\n| database | events | usage API ms (median / p95 / min) | billing page ms (median / p95 / min) "
          "| growth, median (API / page) | growth, min (API / page) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        for label, key, events in (("1x", "base", r["events"]), (f"x{r['scale']}", "grown", r["grown_events"])):
            row = r[key]
            if not row:
                continue
            ratio = (f"{r['ratio']['usage_api']} / {r['ratio']['billing_page']}" if key == "grown" else "")
            ratio_min = (f"{r['ratio_of_minimums']['usage_api']} / {r['ratio_of_minimums']['billing_page']}"
                         if key == "grown" else "")
            api, page = row["usage_api"], row["billing_page"]
            print(f"| {r['database']} {label} | {events:,} | {api['median_ms']} / {api['p95_ms']} / {api['min_ms']} "
                  f"| {page['median_ms']} / {page['p95_ms']} / {page['min_ms']} | {ratio} | {ratio_min} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
