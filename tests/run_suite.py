"""`make test`: the whole suite on SQLite, then again on PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL, else the local server on
127.0.0.1:5432 when it answers. Under CI (CI=true) PostgreSQL is required.
"""

from __future__ import annotations

import os
import subprocess
import sys

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_answers(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


def run(label: str, env: dict) -> int:
    print(f"\n==== test suite on {label} ====", flush=True)
    # Two xdist workers (TEST_WORKERS to change; 0 runs in one process): the browser, nginx and
    # fault tests spend most of their time waiting on servers they start.
    workers = os.environ.get("TEST_WORKERS", "2")
    return subprocess.call([sys.executable, "-m", "pytest", "-n", workers, *sys.argv[1:]], env=env)


def main() -> int:
    base = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    status = run("SQLite", base)
    pg_url = os.environ.get("TEST_DATABASE_URL") or LOCAL_POSTGRES
    if not postgres_answers(pg_url):
        if IN_CI or os.environ.get("TEST_DATABASE_URL"):
            print(f"PostgreSQL at {pg_url} does not answer: the PostgreSQL run FAILED", flush=True)
            return 1
        print(f"\nPostgreSQL at {pg_url} does not answer: PostgreSQL run skipped "
              "(set TEST_DATABASE_URL to run it).", flush=True)
        return status
    pg_status = run("PostgreSQL", {**base, "TEST_DATABASE_URL": pg_url})
    return status or pg_status


if __name__ == "__main__":
    sys.exit(main())
