"""`make test`: the whole suite on SQLite and on PostgreSQL, the two passes side by side.

PostgreSQL comes from TEST_DATABASE_URL, else the local server on
127.0.0.1:5432 when it answers. Under CI (CI=true) PostgreSQL is required.
Tests marked `one_database` run in one pass only: the SQLite pass, but for the real-course
files that run in the PostgreSQL pass so both passes end together (tests/conftest.py).

The passes run at once (most of the SQLite pass waits on browsers and servers);
the SQLite pass prints as it goes, the PostgreSQL pass's output follows when it
ends. TEST_PASSES=one-after-other runs them one after the other, as before.

After each pass nothing the suite started may be alive and no database it made
may be left: each pass runs in its own process, the "child subreaper" of
everything its tests start (an orphaned gunicorn worker or a daemonised nginx
comes back to it instead of to init), and every test database carries the
pass's TEST_RUN_TAG. Leftovers are listed, removed, and fail the run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_answers(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: leftovers go to init, unseen
        pass


def children() -> list[int]:
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            found += [int(pid) for pid in task.read_text().split()]
        except OSError:
            pass
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def reap_leftover_processes(label: str) -> bool:
    """True when no process the pass started outlived it; else list them, kill them, and say so."""
    leftovers = children()
    if leftovers:
        time.sleep(2)  # a server stopping as pytest exited has a moment to go
        leftovers = [pid for pid in children() if not _zombie(pid)]
    if not leftovers:
        return True
    print(f"\n{label}: FAILED: {len(leftovers)} process(es) the suite started outlived it:", flush=True)
    for pid in leftovers:
        print(f"  {pid}: {command_line(pid)[:200]}", flush=True)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in leftovers:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return False


def _zombie(pid: int) -> bool:
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            os.waitpid(pid, 0)
            return True
    except (OSError, ChildProcessError):
        return True
    return False


def drop_leftover_databases(url: str, tag: str, label: str) -> bool:
    """True when the pass left no database of its own on the PostgreSQL server at `url`."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True,
                         connect_timeout=5) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"tracker\\_%\\_{tag}\\_%",))]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if names:
        print(f"\n{label}: FAILED: the suite left {len(names)} test database(s) behind (now dropped): "
              + ", ".join(names), flush=True)
    return not names


def run(label: str, env: dict) -> int:
    print(f"\n==== test suite on {label} ====", flush=True)
    # Two xdist workers (TEST_WORKERS to change; 0 runs in one process): the browser, nginx and
    # fault tests spend most of their time waiting on servers they start.
    workers = os.environ.get("TEST_WORKERS", "2")
    tag = uuid.uuid4().hex[:8]
    started = time.monotonic()
    status = subprocess.call([sys.executable, "-m", "pytest", "-n", workers, *sys.argv[1:]],
                             env={**env, "TEST_RUN_TAG": tag})
    clean = reap_leftover_processes(label)
    if env.get("TEST_DATABASE_URL"):
        clean = drop_leftover_databases(env["TEST_DATABASE_URL"], tag, label) and clean
    status = status or (0 if clean else 1)
    print(f"==== {label} pass: {'passed' if status == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s ====",
          flush=True)
    return status


PASS_ENV = "RUN_SUITE_PASS"  # set in a pass's own process: the label of the pass it runs


def run_pass_here() -> int:
    """One pass in this process, which is the subreaper of what its tests start."""
    become_subreaper()
    label = os.environ.pop(PASS_ENV)
    return run(label, dict(os.environ))


def start_pass(label: str, env: dict, output=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *sys.argv[1:]], env={**env, PASS_ENV: label},
                            stdout=output, stderr=subprocess.STDOUT if output else None)


def main() -> int:
    if PASS_ENV in os.environ:
        return run_pass_here()
    become_subreaper()
    base = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    pg_url = os.environ.get("TEST_DATABASE_URL") or LOCAL_POSTGRES
    with_postgres = postgres_answers(pg_url)
    if not with_postgres and (IN_CI or os.environ.get("TEST_DATABASE_URL")):
        print(f"PostgreSQL at {pg_url} does not answer: the PostgreSQL run FAILED", flush=True)
        return 1
    one_after_other = os.environ.get("TEST_PASSES", "side-by-side") == "one-after-other"
    if with_postgres:
        base["TEST_BOTH_PASSES"] = "1"  # each one_database test runs in one of them (tests/conftest.py)
    if not with_postgres or one_after_other:
        status = start_pass("SQLite", base).wait()
        if not with_postgres:
            print(f"\nPostgreSQL at {pg_url} does not answer: PostgreSQL run skipped "
                  "(set TEST_DATABASE_URL to run it).", flush=True)
            return status
        pg_status = start_pass("PostgreSQL", {**base, "TEST_DATABASE_URL": pg_url}).wait()
    else:
        print("\n(the PostgreSQL pass runs at the same time; its output follows when it ends)", flush=True)
        with tempfile.TemporaryFile() as pg_output:
            postgres = start_pass("PostgreSQL", {**base, "TEST_DATABASE_URL": pg_url}, pg_output)
            status = start_pass("SQLite", base).wait()
            pg_status = postgres.wait()
            pg_output.seek(0)
            sys.stdout.flush()
            sys.stdout.buffer.write(pg_output.read())
            sys.stdout.flush()
    # Each pass reaped its own; anything that still came back here outlived its pass's check.
    clean = reap_leftover_processes("The suite")
    return status or pg_status or (0 if clean else 1)


if __name__ == "__main__":
    sys.exit(main())
