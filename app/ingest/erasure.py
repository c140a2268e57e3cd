"""Learners: erasure of one student's data on request (GDPR art. 17)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import audit
from app.clients.services import snapshot
from app.identity.student_ids import (
    SEALED_VALUE,
    InvalidIdentity,
    Pseudonymiser,
    legacy_student_id,
    normalise_student_id,
)
from app.ingest import seatless
from app.ingest.models import SeatlessBeacon
from app.learners import merges
from app.learners.held_back_models import HeldBackBeacon
from app.models import Client, DailyOutcome, DailySource, DailyUsage, Event, Learner
from app.outbound import outbox


def erase_learner(session: Session, pseudonymiser: Pseudonymiser, client: Client, student_id: str,
                  actor: str) -> int:
    """Delete a learner's events, usage and record. Returns how many learner rows went; commits.

    The student ID is normalised as at ingest and, for anonymised clients (or
    learners pseudonymised before a switch), turned into its pseudonym, so the
    same person is found in either mode, with every identity merged with it
    (one person under two ID schemes). Learners stored before invisible
    characters were dropped from IDs are found too: under the ID as typed, and
    (verbatim rows) any stored ID that normalises to the same learner today.
    The audit entry names no student.
    """
    normalised = normalise_student_id(student_id)
    if client.sealed and not SEALED_VALUE.match(normalised):
        raise InvalidIdentity("this client's packages are sealed: give the learner's sealed ID "
                              "(the sealing page computes it from the client's key)")
    forms = {normalised, legacy_student_id(student_id) or normalised}
    identities = set(forms)
    client_snapshot = snapshot(session, client)
    key = client_snapshot.pseudonym_key
    if key is not None:
        identities.update(pseudonymiser.pseudonym(key, form) for form in forms)
    learner_ids = set(session.scalars(
        select(Learner.id).where(Learner.client_id == client.id, Learner.identity.in_(identities))
    ))
    learner_ids.update(_stored_before_the_change(session, client, normalised))
    if key is not None:  # beacons set aside without a seat grant keep the learner as a keyed digest
        session.execute(delete(SeatlessBeacon).where(
            SeatlessBeacon.client_id == client.id,
            SeatlessBeacon.learner_digest.in_({seatless.learner_digest(pseudonymiser, client_snapshot, form)
                                               for form in forms})))
    # Identities merged with it are the same person (an LMS that changed its ID scheme).
    learner_ids = sorted(merges.same_person(session, client.id, learner_ids))
    if learner_ids:
        for per_day in (DailyUsage, DailySource, DailyOutcome):
            session.execute(delete(per_day).where(per_day.learner_id.in_(learner_ids)))
        session.execute(delete(Event).where(Event.learner_id.in_(learner_ids)))
        session.execute(delete(Learner).where(Learner.id.in_(learner_ids)))
        outbox.forget_learners(session, client.id, learner_ids)  # webhook bodies name the learner
    # Beacons held back under this ID (a placeholder a CSM listed) go too.
    held = session.execute(delete(HeldBackBeacon).where(HeldBackBeacon.client_id == client.id,
                                                        HeldBackBeacon.identity.in_(identities))).rowcount
    audit.record(session, actor, "learner.erase", client.id, None,
                 {"learners_erased": len(learner_ids), **({"held_back_erased": held} if held else {})})
    session.commit()
    return len(learner_ids)


def _stored_before_the_change(session: Session, client: Client, normalised: str) -> list[int]:
    """Verbatim rows whose stored ID still carries characters today's rule drops (rare; a scan)."""
    found = []
    rows = session.execute(select(Learner.id, Learner.identity).where(
        Learner.client_id == client.id, Learner.identity != normalised))
    for learner_id, identity in rows:
        if identity.startswith("p:") or identity == normalised:
            continue
        try:
            if normalise_student_id(identity) == normalised:
                found.append(learner_id)
        except InvalidIdentity:
            continue
    return found
