"""Rate-limit counters every worker of one machine shares, with no server to run.

``RATELIMIT_STORAGE_URI`` names where Flask-Limiter keeps its counters.
``redis://host:6379/0`` shares them between machines (the production set-up,
deploy/). With no Redis the default is ``machine:///<instance>/ratelimits.db``:
this storage, a small SQLite file that all gunicorn workers of the machine
update in one atomic statement per hit, so a documented limit holds across
workers (``memory://`` would give each worker its own count: N workers let N
times the limit through). Counters need no durability: the file is written
without fsync and may be deleted at any time.

Only the fixed-window strategy (Flask-Limiter's default) is supported.

When the store is down (Redis stopped) no limit fails open: Flask-Limiter's in-memory fallback
(``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``) counts every limit, sign-in and beacons alike, in each
worker's memory until the store answers again (so a limit holds per worker instead of per machine),
logs a warning when it switches, and ``/healthz`` names the state (``store_state``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from limits.storage import Storage

_SCHEMA = ("CREATE TABLE IF NOT EXISTS hits (key TEXT PRIMARY KEY, count INTEGER NOT NULL, "
           "expires REAL NOT NULL) WITHOUT ROWID")
_INCR = """
INSERT INTO hits (key, count, expires) VALUES (:key, :amount, :expires)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN hits.expires <= :now THEN excluded.count ELSE hits.count + excluded.count END,
    expires = CASE WHEN hits.expires <= :now THEN excluded.expires ELSE hits.expires END
RETURNING count
"""
# Expired counters are dropped now and then, not on every hit.
_PURGE_EVERY = 1000


class MachineStorage(Storage):
    """Fixed-window counters in a SQLite file shared by the processes of one machine."""

    STORAGE_SCHEME = ["machine"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        path = urlsplit(uri).path
        if not path or path == "/":
            raise ValueError("machine:// needs a file path, e.g. machine:///var/lib/tracker/ratelimits.db")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._hits = 0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread and per process: never carried across gunicorn's fork.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            # Switching a new file to WAL takes an exclusive lock that SQLite does not wait for:
            # workers opening their first connections at once got "database is locked", and a
            # swallowed storage error lets that request through uncounted. Set-up goes one at a time.
            with open(self.path.with_name(self.path.name + ".setup-lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        conn = self._connection()
        count = conn.execute(_INCR, {"key": key, "amount": amount, "expires": now + expiry, "now": now}).fetchone()[0]
        self._hits += 1
        if self._hits % _PURGE_EVERY == 0:
            conn.execute("DELETE FROM hits WHERE expires <= ?", (now,))
        return int(count)

    def get(self, key: str) -> int:
        row = self._connection().execute("SELECT count FROM hits WHERE key = ? AND expires > ?",
                                          (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._connection().execute("SELECT expires FROM hits WHERE key = ? AND expires > ?",
                                          (key, time.time())).fetchone()
        return float(row[0]) if row else time.time()

    def decr(self, key: str, amount: int = 1) -> int:
        conn = self._connection()
        conn.execute("UPDATE hits SET count = MAX(count - ?, 0) WHERE key = ?", (amount, key))
        return self.get(key)

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1")
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        return self._connection().execute("DELETE FROM hits").rowcount

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM hits WHERE key = ?", (key,))


log = logging.getLogger(__name__)


def store_state(limiter) -> str:
    """"ok", or "unreachable" (limits are being counted per worker in memory); logged as an error."""
    try:
        healthy = bool(limiter.storage.check())
    except Exception:  # noqa: BLE001 - any failure of the store is the answer, never a 500
        healthy = False
    if not healthy:
        log.error("rate-limit store %s unreachable: limits are counted by each worker alone until it answers",
                  limiter.storage.__class__.__name__)
        return "unreachable: each worker counts limits alone"
    return "ok"
