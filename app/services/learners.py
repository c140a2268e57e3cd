"""Learners: erasure of one student's data on request (GDPR art. 17)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..identity import InvalidIdentity, Pseudonymiser, legacy_student_id, normalise_student_id
from ..models import Client, DailyUsage, Event, Learner
from . import audit, merges, outbox
from .clients import snapshot


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
    forms = {normalised, legacy_student_id(student_id) or normalised}
    identities = set(forms)
    key = snapshot(session, client).pseudonym_key
    if key is not None:
        identities.update(pseudonymiser.pseudonym(key, form) for form in forms)
    learner_ids = set(session.scalars(
        select(Learner.id).where(Learner.client_id == client.id, Learner.identity.in_(identities))
    ))
    learner_ids.update(_stored_before_the_change(session, client, normalised))
    # Identities merged with it are the same person (an LMS that changed its ID scheme).
    learner_ids = sorted(merges.same_person(session, client.id, learner_ids))
    if learner_ids:
        session.execute(delete(DailyUsage).where(DailyUsage.learner_id.in_(learner_ids)))
        session.execute(delete(Event).where(Event.learner_id.in_(learner_ids)))
        session.execute(delete(Learner).where(Learner.id.in_(learner_ids)))
        outbox.forget_learners(session, client.id, learner_ids)  # webhook bodies name the learner
    audit.record(session, actor, "learner.erase", client.id, None, {"learners_erased": len(learner_ids)})
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
