"""Accepting beacons: the hot path, from a validated beacon to what happened to it.

``accept_beacon`` is the one call the beacon view makes: it checks the key and
the origin, makes the learner's identity, and hands the beacon to the
process's group committer (``group_commit``), returning once the transaction
holding it has committed (stored or duplicate) or failed (unavailable). The
view only maps the outcome to HTTP. One transaction records the learner
(upserted), the event (stored once per event ID) and the learner's day of use
for the course: ``batch.py`` has its steps.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.clients.services import ClientDirectory, ClientSnapshot
from app.extensions import db
from app.identity.student_ids import InvalidIdentity, Pseudonymiser
from app.ingest import seatless
from app.ingest.batch import (
    DUPLICATE,
    REFUSED,
    STORED,
    UNAVAILABLE,
    Beacon,
    PendingBeacon,
    _insert,
    begin_for_write,
    learner_identity,
    write_batch,
)
from app.ingest.group_commit import GroupCommitter, sqlite_writers
from app.licensing.seat_grants import SeatGrants
from app.models import RefusedOrigin
from app.outbound import outbox

__all__ = ["Beacon", "BeaconOutcome", "accept_beacon", "learner_identity", "record_beacon",
           "record_refused_origin", "committer_for"]

log = logging.getLogger(__name__)

# Why a beacon is refused, and what the tracker is told.
REFUSALS = {
    "unknown_key": "this key is unknown or no longer active",
    "untracked_licence": "this client's licence is not tracked",
    "pseudonyms_shredded": "this client's pseudonym salt was deleted; it records no more learners",
    "origin_not_allowed": "this LMS origin is not allowed for the key",
}


@dataclass(frozen=True)
class BeaconOutcome:
    """What happened to a beacon: ``stored``, ``duplicate``, ``refused`` (with a reason) or ``unavailable``."""

    status: str
    reason: str | None = None
    message: str = ""
    fields: dict = field(default_factory=dict)

    @property
    def acknowledged(self) -> bool:
        """Stored now or before: the beacon is on disk and may be answered 204."""
        return self.status in (STORED, DUPLICATE)


def _refused(reason: str, message: str | None = None, **fields) -> BeaconOutcome:
    return BeaconOutcome(REFUSED, reason, message or REFUSALS[reason], fields)


_UNAVAILABLE = BeaconOutcome(UNAVAILABLE, "storage", "storage is unavailable, try again later")
_committers_guard = threading.Lock()


def committer_for(app: Flask) -> GroupCommitter:
    """The app's group committer in this process (made at the first beacon, after gunicorn forks)."""
    committer = app.extensions.get("beacon_committer")
    if committer is None:
        with _committers_guard:
            committer = app.extensions.get("beacon_committer")
            if committer is None:
                committer = GroupCommitter(db.engine, app.extensions["pseudonymiser"],
                                           app.extensions["client_directory"],
                                           max_batch=app.config.get("BEACON_MAX_BATCH", 64))
                app.extensions["beacon_committer"] = committer
    return committer


def accept_beacon(session: Session, committer: GroupCommitter, key: str, origin: str | None, fields: dict,
                  own_origins: Callable[[], set[str]] = set, now: dt.datetime | None = None,
                  grants: SeatGrants | None = None) -> BeaconOutcome:
    """Check, identify and store one beacon (``fields``: BeaconSchema's output); never raises for bad input.

    ``session`` serves only cache misses of the client directory and the
    count of a refused origin; the beacon itself is written by ``committer``.
    ``own_origins`` lists this server's origins (remote package content is
    served from here), asked for only when the origin is not the client's.
    ``grants`` reads the seat grant a remote package's beacon carries: without a valid one, a
    new learner's beacon of a client whose licence blocks new learners is set aside (``seatless``).
    """
    directory = committer.directory
    try:
        client = directory.client_for_key(session, key)
        if client is None or not client.active:
            return _refused("unknown_key")
        if not client.tracked:
            return _refused("untracked_licence")
        if client.anonymised and client.pseudonym_key is None:
            return _refused("pseudonyms_shredded")
        # A remote package's beacon comes from our content origin and names the LMS it runs in.
        remote = (fields.get("lms_origin") is not None and origin is not None and origin in own_origins())
        lms_origin = fields["lms_origin"] if remote else origin
        if not client.origin_allowed(lms_origin) and not (
                not remote and origin is not None and origin in own_origins()):
            record_refused_origin(session, client.id, lms_origin or "(none)")
            if lms_origin is None:
                return _refused("origin_not_allowed", "this client accepts beacons only from its allowed LMS "
                                "origins, and this request has no Origin header")
            return _refused("origin_not_allowed")
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("beacon not stored, storage unavailable: %s", type(exc).__name__)
        return _UNAVAILABLE
    finally:
        # The request holds no connection while its beacon waits for a batch.
        session.close()

    beacon = Beacon(course=fields["course"], student_id=fields["student_id"], student_name=fields["student_name"],
                    event=fields["event"], event_id=fields["event_id"], scorm_version=fields["scorm_version"],
                    package=fields["package"], placeholder=bool(fields.get("placeholder")))
    try:
        # A new anonymised learner's pseudonym costs an Argon2 hash: made here, in the request's
        # thread, not inside the batch everyone waits for.
        identity = learner_identity(committer.pseudonymiser, client, beacon)
    except InvalidIdentity as exc:
        return _refused("invalid_beacon", str(exc), student_id=[str(exc)])
    now = now or dt.datetime.now(dt.UTC)
    pending = PendingBeacon(client, beacon, _host(lms_origin), now, identity)
    # A placeholder ID is held back (it takes no seat), never set aside for want of a seat grant.
    if grants is not None and client.remote_package is not None and pending.held_back is None:
        try:
            reason = seatless.reason_to_set_aside(session, directory, grants, client, beacon, fields.get("grant"),
                                                  identity[0], now.date())
            if reason is not None:
                seatless.set_aside(session, committer.pseudonymiser, client, beacon, beacon.event_id or uuid.uuid4(),
                                   _host(lms_origin), reason, now)
                return BeaconOutcome(STORED, "set_aside")
        except SQLAlchemyError as exc:
            session.rollback()
            log.warning("beacon not stored, storage unavailable: %s", type(exc).__name__)
            return _UNAVAILABLE
        finally:
            session.close()
    pending = committer.submit(pending)
    if pending.outcome == UNAVAILABLE:
        return _UNAVAILABLE
    if pending.outcome == REFUSED:
        return _refused(pending.reason)
    return BeaconOutcome(pending.outcome)


def _host(origin: str | None) -> str | None:
    if not origin or origin == "null":
        return None
    return origin.split("://", 1)[-1][:255]


def record_beacon(session: Session, pseudonymiser: Pseudonymiser, directory: ClientDirectory,
                  client: ClientSnapshot, beacon: Beacon, lms_host: str | None = None,
                  now: dt.datetime | None = None) -> bool:
    """Store one beacon in ``session``'s transaction and commit (a batch of one, same steps).

    True: stored now; False: stored before (same event ID), and the
    transaction is rolled back, so a repeated event ID changes nothing at all.
    Raises ``InvalidIdentity`` when the client refuses it (e.g. shredded).
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        identity = learner_identity(pseudonymiser, client, beacon)
        pending = PendingBeacon(client, beacon, lms_host, now, identity)
        connection = session.connection()
        with sqlite_writers.turn(connection):
            begin_for_write(connection)
            write_batch(connection, pseudonymiser, directory, [pending])
            if pending.outcome == STORED:
                session.commit()
            else:
                session.rollback()
        if pending.outcome == REFUSED:
            raise InvalidIdentity(REFUSALS.get(pending.reason, pending.reason))
        return pending.outcome == STORED
    except Exception:
        session.rollback()
        raise


def record_refused_origin(session: Session, client_id: int, origin: str, now: dt.datetime | None = None) -> None:
    """Count a beacon refused for its origin (the go-live check lists these hosts). Commits."""
    now = now or dt.datetime.now(dt.UTC)
    insert = _insert(session.connection())
    stmt = insert(RefusedOrigin).values(client_id=client_id, origin=origin[:255], count=1,
                                        first_seen=now, last_seen=now)
    try:
        session.execute(stmt.on_conflict_do_update(
            index_elements=["client_id", "origin"],
            set_={"count": RefusedOrigin.count + 1, "last_seen": stmt.excluded.last_seen},
        ))
        outbox.enqueue_refused_origin(session, client_id, origin[:255], now)
        session.commit()
    except Exception:
        session.rollback()
        raise
