"""Learners: erasure of one student's data on request (GDPR art. 17)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..identity import Pseudonymiser, normalise_student_id
from ..models import Client, DailyUsage, Event, Learner
from . import audit, outbox
from .clients import snapshot


def erase_learner(session: Session, pseudonymiser: Pseudonymiser, client: Client, student_id: str,
                  actor: str) -> int:
    """Delete a learner's events, usage and record. Returns how many learner rows went; commits.

    The student ID is normalised as at ingest and, for anonymised clients (or
    learners pseudonymised before a switch), turned into its pseudonym, so the
    same person is found in either mode. The audit entry names no student.
    """
    normalised = normalise_student_id(student_id)
    identities = [normalised]
    key = snapshot(session, client).pseudonym_key
    if key is not None:
        identities.append(pseudonymiser.pseudonym(key, normalised))
    learner_ids = list(session.scalars(
        select(Learner.id).where(Learner.client_id == client.id, Learner.identity.in_(identities))
    ))
    if learner_ids:
        session.execute(delete(DailyUsage).where(DailyUsage.learner_id.in_(learner_ids)))
        session.execute(delete(Event).where(Event.learner_id.in_(learner_ids)))
        session.execute(delete(Learner).where(Learner.id.in_(learner_ids)))
        outbox.forget_learners(session, client.id, learner_ids)  # webhook bodies name the learner
    audit.record(session, actor, "learner.erase", client.id, None, {"learners_erased": len(learner_ids)})
    session.commit()
    return len(learner_ids)
