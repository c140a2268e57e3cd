"""Merging two identities of one person (an LMS that changed its ID scheme), and undoing it.

A merge is recorded as a ``LearnerMerge`` row (old learner → learner it joins)
and never moves a usage row or an event: each learner's ``merged_into_id``
names the end of its chain of merges in force, and every count of people
counts ``PERSON`` (that learner, or the learner itself) instead of the usage
row's learner. Undoing a merge marks its row undone and recomputes the
pointers, so every figure of every period is as before.

Both modes work alike: for anonymised clients the learners are found by their
pseudonyms (the CLI pseudonymises the plain IDs it is given in memory) and the
audit log names pseudonyms' short references, never a plain ID or name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, aliased

from app import audit
from app.clients.services import snapshot
from app.identity.student_ids import Pseudonymiser, normalise_student_id, short_reference
from app.learners.models import LearnerMerge
from app.models import Client, DailyUsage, Learner, utcnow

# --- counting people -----------------------------------------------------------------

# The learner of a usage row, under a name of its own so that a query that joins
# ``Learner`` for other reasons (names, filters) can join this one too.
USAGE_LEARNER = aliased(Learner, name="usage_learner")
# Who a usage row counts as: the learner it was merged into, or its own learner.
PERSON = func.coalesce(USAGE_LEARNER.merged_into_id, DailyUsage.learner_id)


def with_people(query):
    """``query`` (over ``DailyUsage``) with the join that ``PERSON`` needs."""
    return query.join_from(DailyUsage, USAGE_LEARNER, USAGE_LEARNER.id == DailyUsage.learner_id)


def same_person(session: Session, client_id: int, learner_ids) -> set[int]:
    """The given learners and every identity merged with any of them (one person each)."""
    if not learner_ids:
        return set()
    people = select(func.coalesce(Learner.merged_into_id, Learner.id)).where(
        Learner.client_id == client_id, Learner.id.in_(list(learner_ids)))
    return set(learner_ids) | set(session.scalars(select(Learner.id).where(
        Learner.client_id == client_id,
        (Learner.id.in_(people)) | (Learner.merged_into_id.in_(people)))))


# --- merging ---------------------------------------------------------------------------


class MergeError(ValueError):
    """A merge or unmerge that cannot be done; the message says why and is safe to show."""


def reference(learner: Learner) -> str:
    """How pages, the CLI and the audit log name a learner: its ID, or a pseudonym's short form."""
    return short_reference(learner.identity) if learner.pseudonymised else learner.identity


def audit_reference(learner: Learner) -> str:
    """How the audit log names a merged learner: never a student ID (an audit entry outlives an
    erasure), but the learner's row, or a pseudonym's short form."""
    return short_reference(learner.identity) if learner.pseudonymised else f"learner #{learner.id}"


def find_learner_by_student_id(session: Session, pseudonymiser: Pseudonymiser, client: Client,
                               student_id: str) -> Learner:
    """The client's learner for a plain student ID (pseudonymised in memory for anonymised clients).

    A stored pseudonym (``p:…``) is taken as it is, so staff can name a learner
    of an anonymised client without knowing the plain ID.
    """
    stripped = (student_id or "").strip()
    key = snapshot(session, client).pseudonym_key
    if stripped.startswith("p:") and client.anonymised:
        identities = {stripped}
    elif client.anonymised:
        # The plain ID stays in this process's memory: only its pseudonym is looked up.
        identities = {pseudonymiser.pseudonym(key, normalise_student_id(student_id))}
    else:
        normalised = normalise_student_id(student_id)
        identities = {normalised}
        if key is not None:  # a learner pseudonymised before the client went back to verbatim
            identities.add(pseudonymiser.pseudonym(key, normalised))
    learner = session.scalar(select(Learner).where(Learner.client_id == client.id,
                                                   Learner.identity.in_(identities)).limit(1))
    if learner is None:
        raise MergeError("no learner of this client has that student ID")
    return learner


def active_merges(session: Session, client_id: int) -> list[LearnerMerge]:
    return list(session.scalars(select(LearnerMerge).where(
        LearnerMerge.client_id == client_id, LearnerMerge.undone_at.is_(None)).order_by(LearnerMerge.created_at,
                                                                                        LearnerMerge.id)))


def _ends(merges: list[LearnerMerge]) -> dict[int, int]:
    """Each merged learner → the end of its chain of merges in force."""
    into = {m.learner_id: m.into_learner_id for m in merges}
    ends = {}
    for start in into:
        seen, current = {start}, into[start]
        while current in into and current not in seen:
            seen.add(current)
            current = into[current]
        ends[start] = current
    return ends


def apply_merges(session: Session, client_id: int) -> None:
    """Make every learner's ``merged_into_id`` agree with the merges in force (only changed rows written)."""
    session.flush()
    ends = _ends(active_merges(session, client_id))
    current = dict(session.execute(select(Learner.id, Learner.merged_into_id).where(
        Learner.client_id == client_id, Learner.merged_into_id.is_not(None))).all())
    changed = [{"learner": learner_id, "end": ends.get(learner_id)} for learner_id in sorted(set(current) | set(ends))
               if current.get(learner_id) != ends.get(learner_id)]
    if changed:
        learners = Learner.__table__
        session.connection().execute(
            update(learners).where(learners.c.id == bindparam("learner")).values(merged_into_id=bindparam("end")),
            changed)
    session.expire_all()


def _end_of(session: Session, learner: Learner) -> int:
    return learner.merged_into_id or learner.id


def merge(session: Session, client: Client, old: Learner, into: Learner, *, actor: str, source: str = "manual",
          evidence: dict | None = None, commit: bool = True, apply: bool = True) -> LearnerMerge:
    """Merge ``old`` into ``into``: from now on they count as one learner everywhere. Audited.

    Refused when they are one learner already, when ``old`` is merged into
    someone else (unmerge it first), or when either is another client's.
    ``apply=False`` leaves ``apply_merges`` to the caller, once for many
    merges of learners not merged before and each in one merge only.
    """
    if old.client_id != client.id or into.client_id != client.id:
        raise MergeError("both learners must be this client's")
    if old.id == into.id or _end_of(session, into) == old.id or _end_of(session, into) == _end_of(session, old):
        raise MergeError("these two identities already count as one learner")
    if old.merged_into_id is not None:
        raise MergeError(f"{reference(old)} is merged into another learner already; unmerge it first")
    record = LearnerMerge(client_id=client.id, learner_id=old.id, into_learner_id=into.id, source=source,
                          evidence=evidence, created_by=actor, created_at=utcnow())
    session.add(record)
    audit.record(session, actor, "learner.merge", client.id, None,
                 {"learner": audit_reference(old), "into": audit_reference(into), "source": source,
                  **({"confidence": evidence["confidence"]} if evidence and "confidence" in evidence else {})})
    if apply:
        apply_merges(session, client.id)
    if commit:
        session.commit()
    return record


def unmerge(session: Session, client: Client, old: Learner, *, actor: str, commit: bool = True) -> LearnerMerge:
    """Undo the merge in force of ``old``: it counts as its own learner again. Audited."""
    record = session.scalar(select(LearnerMerge).where(
        LearnerMerge.client_id == client.id, LearnerMerge.learner_id == old.id, LearnerMerge.undone_at.is_(None)))
    if record is None:
        raise MergeError(f"{reference(old)} is not merged into another learner")
    record.undone_at, record.undone_by = utcnow(), actor
    into = session.get(Learner, record.into_learner_id)
    audit.record(session, actor, "learner.unmerge", client.id,
                 {"learner": audit_reference(old), "into": audit_reference(into) if into else None}, None)
    apply_merges(session, client.id)
    if commit:
        session.commit()
    return record


def find_merge(session: Session, client: Client, merge_id: int) -> LearnerMerge | None:
    return session.scalar(select(LearnerMerge).where(LearnerMerge.id == merge_id,
                                                     LearnerMerge.client_id == client.id))


@dataclass(frozen=True)
class MergeRow:
    id: int
    learner: str
    learner_shape: str | None
    into: str
    into_shape: str | None
    source: str
    confidence: float | None
    created_by: str
    created_at: dt.datetime
    undone_by: str | None
    undone_at: dt.datetime | None


def merge_history(session: Session, client: Client, limit: int = 500) -> list[MergeRow]:
    """The client's merges, newest first, those in force and those undone."""
    merges = session.scalars(select(LearnerMerge).where(LearnerMerge.client_id == client.id)
                             .order_by(LearnerMerge.created_at.desc(), LearnerMerge.id.desc()).limit(limit))
    return [MergeRow(m.id, reference(m.learner), m.learner.id_shape, reference(m.into), m.into.id_shape, m.source,
                     (m.evidence or {}).get("confidence"), m.created_by, m.created_at, m.undone_by, m.undone_at)
            for m in merges]
