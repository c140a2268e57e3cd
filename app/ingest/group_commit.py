"""Durable group commit: the beacons of concurrent requests of one process share a transaction.

A request thread queues its beacon and waits. Whichever waiting thread finds
no batch being written becomes the writer: it takes every queued beacon (up
to ``max_batch``), writes them in one transaction (``batch.py``), commits,
and wakes the others. Each thread answers only after the commit that holds
its beacon, so an acknowledged beacon is on disk; a failed batch is rolled
back whole and every beacon in it is answered ``unavailable`` (503, the
tracker retries; the event ID keeps a retried beacon from counting twice).

With one thread per process (sync workers) every batch holds one beacon and
this costs one lock round. With threads (gthread), beacons that arrive while
a batch is being written form the next one: the commit (an fsync on SQLite,
a round trip and WAL flush on PostgreSQL) is paid once per batch.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading

from sqlalchemy import Connection, Engine

from app.clients.services import ClientDirectory
from app.identity.student_ids import Pseudonymiser
from app.ingest.batch import UNAVAILABLE, PendingBeacon, begin_for_write, write_batch

log = logging.getLogger(__name__)


class _SQLiteWriters:
    """Beacon writers on one SQLite file take turns in a queue instead of polling its lock.

    SQLite lets one writer in at a time and makes the others retry after
    growing sleeps (the busy timeout): with several gunicorn workers that
    shows as p99 latencies of hundreds of milliseconds. A thread lock per
    process and an ``flock`` on a file beside the database across processes
    let the next writer in as soon as the last commits. Other writers (admin,
    CLI) still meet SQLite's own lock and busy timeout.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def turn(self, connection: Connection):
        database = connection.engine.url.database if connection.dialect.name == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            yield
            return
        with self._guard:
            if database not in self._locks:
                fd = os.open(database + ".writers", os.O_RDWR | os.O_CREAT, 0o600)
                self._locks[database] = (threading.Lock(), fd)
            thread_lock, fd = self._locks[database]
        with thread_lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


sqlite_writers = _SQLiteWriters()


class GroupCommitter:
    """One per app and process; ``submit`` returns once the beacon's transaction has ended."""

    def __init__(self, engine: Engine, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                 max_batch: int = 64):
        self.engine = engine
        self.pseudonymiser = pseudonymiser
        self.directory = directory
        self.max_batch = max_batch
        self._queue: list[PendingBeacon] = []
        self._writing = False
        self._changed = threading.Condition()
        # Seen by tests: the sizes of the batches written (bounded).
        self.batch_sizes: list[int] = []

    def submit(self, pending: PendingBeacon) -> PendingBeacon:
        with self._changed:
            self._queue.append(pending)
            while not pending.finished:
                if self._writing:
                    self._changed.wait()
                    continue
                self._writing = True
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._changed.release()
                try:
                    self.commit_batch(batch)
                finally:
                    self._changed.acquire()
                    self._writing = False
                    self._changed.notify_all()
        return pending

    def commit_batch(self, batch: list[PendingBeacon]) -> None:
        """Write and commit one batch; on any failure roll it all back and mark it unavailable."""
        if len(self.batch_sizes) < 10_000:
            self.batch_sizes.append(len(batch))
        try:
            with self.engine.connect() as connection, sqlite_writers.turn(connection):
                begin_for_write(connection)
                write_batch(connection, self.pseudonymiser, self.directory, batch)
                connection.commit()
        except Exception as exc:  # noqa: BLE001 - every beacon gets an answer, never a 500
            # The exception text may carry SQL or values (never log a plain ID): its type only.
            log.warning("batch of %d beacon(s) not stored, rolled back: %s", len(batch), type(exc).__name__)
            for pending in batch:
                pending.outcome, pending.reason = UNAVAILABLE, type(exc).__name__
        finally:
            # Outcomes are final only now: a thread never sees "stored" before the commit.
            for pending in batch:
                if pending.outcome is None:  # pragma: no cover - write_batch decides every beacon
                    pending.outcome = UNAVAILABLE
                pending.finished = True
