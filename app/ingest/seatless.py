"""Beacons set aside: a remote package's key, a new learner, a licence that blocks new learners,
and no seat grant.

A remote package's beacon key is served with its content, so anyone who opens the package can
read it and send beacons for made-up learners. While a client's licence blocks new learners,
such beacons must not take seats (five of them would fill a five-seat term and lock every
genuine new learner out), nor seat a learner the limit refused. So a beacon with a remote
package's key takes a new learner's seat only with the seat grant its launch obtained
(``seat_grants``); without one it is acknowledged and kept here, in ``seatless_beacons``, and
counted nowhere. Learners already seated in the window are unaffected, and so are deployed
packages (they have no launcher to obtain a grant) and clients whose licence only records and
flags. The go-live check shows what was set aside.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clients.services import ClientDirectory, ClientSnapshot
from app.identity.student_ids import Pseudonymiser
from app.ingest.batch import Beacon, _insert
from app.ingest.models import SeatlessBeacon
from app.licensing import licences
from app.licensing.seat_grants import SeatGrants

NO_GRANT, BAD_GRANT = "no_grant", "bad_grant"


def learner_digest(pseudonymiser: Pseudonymiser, client: ClientSnapshot, student_id: str) -> str:
    """A keyed digest of the normalised student ID (never the ID itself, in either mode)."""
    return pseudonymiser.name_digest(client.pseudonym_key, "seatless-student-id:" + student_id)


def reason_to_set_aside(session: Session, directory: ClientDirectory, grants: SeatGrants, client: ClientSnapshot,
                        beacon: Beacon, grant: str | None, identity: str, day: dt.date) -> str | None:
    """Why this beacon must not take a seat (``NO_GRANT``, ``BAD_GRANT``), or None: it counts as usual.

    Cheap for what is common: a deployed package's key, or a valid grant, asks the database nothing;
    the client's policy is cached like the client itself.
    """
    if client.remote_package is None:
        return None
    if grants.for_learner(grant, package_id=client.remote_package, student_id=beacon.student_id):
        return None
    if not directory.remembered(("blocks_new_learners", client.id, day),
                                lambda: licences.blocks_new_learners(session, client.id, day)):
        return None
    if licences.launch_decision(session, client.id, identity, day, remote=True).reason == "returning":
        return None  # seated already: this beacon takes no new seat
    return BAD_GRANT if grant else NO_GRANT


def set_aside(session: Session, pseudonymiser: Pseudonymiser, client: ClientSnapshot, beacon: Beacon,
              event_id, lms_host: str | None, reason: str, now: dt.datetime) -> None:
    """Keep the beacon (once per event ID) without counting it. Commits."""
    stmt = _insert(session.connection())(SeatlessBeacon).values(
        event_id=event_id, client_id=client.id, package_id=client.remote_package, course=beacon.course,
        kind=beacon.event, learner_digest=learner_digest(pseudonymiser, client, beacon.student_id),
        lms_host=lms_host, reason=reason, received_at=now,
    ).on_conflict_do_nothing(index_elements=["event_id"])
    try:
        session.execute(stmt)
        session.commit()
    except Exception:
        session.rollback()
        raise


def recent(session: Session, client_id: int, since: dt.datetime) -> dict:
    """What the go-live check shows: beacons set aside since ``since``, learners, hosts."""
    rows = session.execute(
        select(SeatlessBeacon.lms_host, func.count(), func.count(func.distinct(SeatlessBeacon.learner_digest)))
        .where(SeatlessBeacon.client_id == client_id, SeatlessBeacon.received_at >= since)
        .group_by(SeatlessBeacon.lms_host).order_by(func.count().desc())).all()
    learners = session.scalar(select(func.count(func.distinct(SeatlessBeacon.learner_digest))).where(
        SeatlessBeacon.client_id == client_id, SeatlessBeacon.received_at >= since)) or 0
    return {"beacons": sum(r[1] for r in rows), "learners": learners,
            "hosts": [(host or "(none)", n) for host, n, _ in rows]}
