"""Switching a client between verbatim and anonymised (pseudonymised) learners.

Verbatim -> anonymised rewrites every stored learner of the client in one
transaction: the identity becomes its pseudonym, the name and every event's
``learner_name`` become the keyed name digest. Two rows that map to one
pseudonym (a learner pseudonymised before, who came back under the plain ID)
are merged, so unique users per period stay what they were. It cannot be
undone: the plain values are gone.

Anonymised -> verbatim only flips the flag; ingest then links a returning
learner to their pseudonymised row (``ingest._link_pseudonymised_learner``).
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app import audit
from app.clients.services import ClientError, snapshot
from app.identity.student_ids import (
    InvalidIdentity,
    Pseudonymiser,
    is_name_digest,
    normalise_name,
    normalise_student_id,
)
from app.learners.held_back_models import HeldBackBeacon
from app.models import Client, DailyOutcome, DailySource, DailyUsage, Event, Learner


def plain_learner_count(session: Session, client: Client) -> int:
    """Learners stored with a plain ID (0 for an anonymised client once pseudonymised)."""
    return session.scalar(select(func.count()).select_from(Learner).where(
        Learner.client_id == client.id, Learner.pseudonymised.is_(False))) or 0


def stored_learner_count(session: Session, client: Client) -> int:
    return session.scalar(select(func.count()).select_from(Learner).where(Learner.client_id == client.id)) or 0


def switch_mode(session: Session, pseudonymiser: Pseudonymiser, client: Client, *, anonymised: bool,
                actor: str) -> dict:
    """Set the client's mode; pseudonymise stored learners when turning anonymisation on.

    Returns what was done (counts only, never a learner). Audited; commits once.
    The caller clears the process's client directory.
    """
    if client.anonymised == anonymised:
        raise ClientError("the client is in that mode already")
    if client.sealed and not anonymised:
        raise ClientError("the client's packages are sealed: turn sealing off before storing learners verbatim")
    before = {"anonymised": client.anonymised}
    done = {"learners_pseudonymised": 0, "learners_merged": 0, "event_names_replaced": 0}
    client.anonymised = anonymised
    if anonymised:
        done = pseudonymise_learners(session, pseudonymiser, client)
    audit.record(session, actor, "client.mode", client.id, before, {"anonymised": anonymised, **done})
    session.commit()
    return done


def pseudonymise_remaining(session: Session, pseudonymiser: Pseudonymiser, client: Client, *, actor: str) -> dict:
    """For an anonymised client: pseudonymise learners stored verbatim after the switch.

    Other processes keep the client's old mode cached for up to
    CLIENT_CACHE_SECONDS, so a beacon in those seconds may still be written
    plain. Audited; commits.
    """
    if not client.anonymised:
        raise ClientError("the client stores learners verbatim")
    done = pseudonymise_learners(session, pseudonymiser, client)
    audit.record(session, actor, "client.pseudonymise_remaining", client.id, None, done)
    session.commit()
    return done


def pseudonymise_learners(session: Session, pseudonymiser: Pseudonymiser, client: Client) -> dict:
    """Replace every plain identity and name of the client by pseudonym and digest (no commit).

    Idempotent: running it again finds nothing plain left to change.
    """
    key = snapshot(session, client).pseudonym_key
    if key is None:
        raise ClientError("this client's pseudonym salt was deleted; its learners cannot be pseudonymised")

    def digest(name: str | None) -> str | None:
        if name is None or is_name_digest(name):
            return name
        try:
            return pseudonymiser.name_digest(key, normalise_name(name))
        except InvalidIdentity:
            return pseudonymiser.name_digest(key, name)

    by_pseudonym: dict[str, int] = {
        identity: learner_id for identity, learner_id in session.execute(
            select(Learner.identity, Learner.id).where(Learner.client_id == client.id,
                                                       Learner.pseudonymised.is_(True)))
    }
    plain = list(session.scalars(select(Learner).where(Learner.client_id == client.id,
                                                       Learner.pseudonymised.is_(False)).order_by(Learner.id)))
    merged = 0
    for learner in plain:
        try:
            normalised = normalise_student_id(learner.identity)
        except InvalidIdentity:
            normalised = learner.identity
        pseudonym = pseudonymiser.pseudonym(key, normalised)
        target_id = by_pseudonym.get(pseudonym)
        if target_id is None:
            learner.identity = pseudonym
            learner.pseudonymised = True
            learner.name = digest(learner.name)
            by_pseudonym[pseudonym] = learner.id
            session.flush()
            continue
        _merge_into(session, learner, session.get(Learner, target_id))
        merged += 1

    # Every event name of the client, whichever learner it belongs to now.
    names = list(session.scalars(select(Event.learner_name).where(
        Event.client_id == client.id, Event.learner_name.is_not(None)).distinct()))
    replaced = 0
    for name in names:
        new = digest(name)
        if new != name:
            replaced += session.execute(update(Event).where(
                Event.client_id == client.id, Event.learner_name == name).values(learner_name=new)).rowcount
    held = _pseudonymise_held_back(session, pseudonymiser, client, key, digest)
    return {"learners_pseudonymised": len(plain) - merged, "learners_merged": merged,
            "event_names_replaced": replaced, **({"held_back_pseudonymised": held} if held else {})}


def _pseudonymise_held_back(session: Session, pseudonymiser: Pseudonymiser, client: Client, key, digest) -> int:
    """Held-back beacons stored verbatim: their ID and name become pseudonym and digest too."""
    rows = list(session.scalars(select(HeldBackBeacon).where(HeldBackBeacon.client_id == client.id,
                                                             HeldBackBeacon.pseudonymised.is_(False))))
    for row in rows:
        row.identity = pseudonymiser.pseudonym(key, row.identity)
        row.pseudonymised = True
        row.name = digest(row.name)
    return len(rows)


def _move_days(session: Session, model, key: tuple[str, ...], counts: tuple[str, ...], source: Learner,
               target: Learner) -> None:
    """Re-key a per-day table's rows (``DailyUsage``, ``DailySource``, ``DailyOutcome``) from
    ``source`` to ``target``; a row the target has already (same ``key``) takes the source's
    ``counts`` and time span, and the source's row goes."""
    target_rows = {tuple(getattr(row, column) for column in key): row
                   for row in session.scalars(select(model).where(model.learner_id == target.id))}
    for row in list(session.scalars(select(model).where(model.learner_id == source.id))):
        same = target_rows.get(tuple(getattr(row, column) for column in key))
        if same is None:
            row.learner_id = target.id
            continue
        for column in counts:
            setattr(same, column, getattr(same, column) + getattr(row, column))
        same.first_at = min(same.first_at, row.first_at)
        same.last_at = max(same.last_at, row.last_at)
        session.delete(row)


def _merge_into(session: Session, source: Learner, target: Learner) -> None:
    """Move a plain learner's events and days of use onto the pseudonymised row, then drop it."""
    session.execute(update(Event).where(Event.learner_id == source.id).values(learner_id=target.id))
    _move_days(session, DailyUsage, ("course_id", "day"), ("launches", "completions"), source, target)
    _move_days(session, DailySource, ("course_id", "day", "lms_host", "package_id"), ("launches",), source, target)
    _move_days(session, DailyOutcome, ("course_id", "day", "kind"), (), source, target)
    target.first_seen = min(target.first_seen, source.first_seen)
    target.last_seen = max(target.last_seen, source.last_seen)
    session.flush()
    session.execute(delete(Learner).where(Learner.id == source.id))
    session.flush()
