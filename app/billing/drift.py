"""ID-scheme drift: a client's LMS starts sending another kind of student ID (e-mail to
employee number, opaque UUID to institutional ID, a rename), and every learner arrives
as new. Found here, proposed as pairs, merged through ``learners/merges.py``.

A *proposal* pairs an identity known before (the old one) with a new identity when

- they carry the same name: the stored name for verbatim clients, the keyed
  name digest (``Pseudonymiser.name_digest``) for anonymised ones, so no plain
  data is needed; empty names never match;
- their ID shapes differ (``identity.id_shape``: email, numeric, uuid,
  username, other), and the new one was first seen within the window;
- the old identity has not been seen since the new one appeared (an ID that
  keeps arriving is a person of its own, whatever their name);
- the name is unambiguous: one learner of the old shape and one of the new
  shape carry it (two "Jane Smith"s are never guessed at), and each of the
  two is in no other pair;
- neither is merged already.

A *drift* is at least ``MIN_PAIRS`` proposals of one shape change (say email
→ numeric). ``check_drift`` (the CLI ``identity check-drift`` and the outbox
worker's periodic sweep) opens one ``IdentityDrift`` episode per client and
shape change and enqueues one ``identity.drift`` event for it (e-mail to the
CSMs and the client's contacts, and webhooks): running it again updates the
figures and alerts nobody. An episode closes when no new pair has appeared for
a whole window; a later change alerts again.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.billing import figures as billing
from app.identity.student_ids import short_reference
from app.learners import merges
from app.learners.models import IdentityDrift
from app.licensing.periods import Period, current_period
from app.models import Client, DailyUsage, Learner, utcnow
from app.outbound import outbox

WINDOW_DAYS = 30
MIN_PAIRS = 3
# Confidence of a proposal: a unique name across an ID change with no overlap in time, more
# when the two identities used a course in common and when the new one appeared soon after
# the old one's last launch.
BASE_CONFIDENCE = 0.6
SHARED_COURSE_CONFIDENCE = 0.25
SOON_CONFIDENCE = 0.15
SOON_DAYS = 60


@dataclass(frozen=True)
class Side:
    learner_id: int
    reference: str
    shape: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class Proposal:
    """Merge ``old`` into ``new``: one person under two ID schemes."""

    old: Side
    new: Side
    shared_courses: int
    confidence: float
    matched_on: str  # "name" | "name digest"

    @property
    def key(self) -> str:
        return f"{self.old.learner_id}-{self.new.learner_id}"

    @property
    def evidence(self) -> dict:
        return {"matched_on": self.matched_on, "old_shape": self.old.shape, "new_shape": self.new.shape,
                "old_first_seen": self.old.first_seen.isoformat(), "old_last_seen": self.old.last_seen.isoformat(),
                "new_first_seen": self.new.first_seen.isoformat(), "shared_courses": self.shared_courses,
                "confidence": self.confidence}


def _window_start(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=WINDOW_DAYS)


def proposals(session: Session, client: Client, now: dt.datetime | None = None) -> list[Proposal]:
    """The pairs to review, best first (see the module docstring for the rules)."""
    now = now or utcnow()
    window_start = _window_start(now)
    # Every unmerged learner carrying the name of a learner new in the window, paired below in memory.
    # Names have no index (the beacon path writes them): the names are fetched first, then their
    # learners by lists of names, a plan that does not depend on the planner's statistics.
    recent_names = sorted(set(session.scalars(select(Learner.name).where(
        Learner.client_id == client.id, Learner.first_seen >= window_start, Learner.merged_into_id.is_(None),
        Learner.id_shape.is_not(None), Learner.name.is_not(None), Learner.name != ""))))
    by_name: dict[str, list] = defaultdict(list)
    for chunk in range(0, len(recent_names), 1000):
        for row in session.execute(
                select(Learner.id, Learner.identity, Learner.pseudonymised, Learner.id_shape, Learner.first_seen,
                       Learner.last_seen, Learner.name)
                .where(Learner.client_id == client.id, Learner.merged_into_id.is_(None),
                       Learner.name.in_(recent_names[chunk:chunk + 1000]))):
            by_name[row.name].append(row)
    pairs = []
    for namesakes in by_name.values():
        # Unambiguous only: exactly one learner of each of the two shapes carries the name.
        per_shape = Counter(learner.id_shape for learner in namesakes)
        single = [learner for learner in namesakes if learner.id_shape and per_shape[learner.id_shape] == 1]
        for new in single:
            if new.first_seen < window_start:
                continue
            pairs += [(old, new) for old in single
                      if old.id_shape != new.id_shape and old.first_seen < new.first_seen
                      and old.last_seen <= new.first_seen]
    # One name under three shapes (two changes) pairs each with each: which is which is not guessed.
    in_pairs = Counter(learner.id for pair in pairs for learner in pair)
    pairs = [(old, new) for old, new in pairs if in_pairs[old.id] == 1 and in_pairs[new.id] == 1]
    ids = sorted({learner.id for pair in pairs for learner in pair})
    courses: dict[int, set[int]] = defaultdict(set)
    for chunk in range(0, len(ids), 500):
        for learner_id, course_id in session.execute(
                select(DailyUsage.learner_id, DailyUsage.course_id).distinct()
                .where(DailyUsage.client_id == client.id, DailyUsage.learner_id.in_(ids[chunk:chunk + 500]))):
            courses[learner_id].add(course_id)
    found = []
    for old, new in pairs:
        old_side = Side(old.id, _reference(old.identity, old.pseudonymised), old.id_shape, old.first_seen,
                        old.last_seen)
        new_side = Side(new.id, _reference(new.identity, new.pseudonymised), new.id_shape, new.first_seen,
                        new.last_seen)
        shared = len(courses[old.id] & courses[new.id])
        confidence = BASE_CONFIDENCE + (SHARED_COURSE_CONFIDENCE if shared else 0) + (
            SOON_CONFIDENCE if new.first_seen - old.last_seen <= dt.timedelta(days=SOON_DAYS) else 0)
        found.append(Proposal(old_side, new_side, shared, round(min(confidence, 1.0), 2),
                              "name digest" if old.pseudonymised or new.pseudonymised else "name"))
    found.sort(key=lambda p: (-p.confidence, p.new.first_seen, p.old.learner_id))
    return found


def _reference(identity: str, pseudonymised: bool) -> str:
    return short_reference(identity) if pseudonymised else identity


# --- episodes and alerts -----------------------------------------------------------------


@dataclass
class ShapeChange:
    from_shape: str
    to_shape: str
    pairs: list[Proposal] = field(default_factory=list)

    @property
    def since(self) -> dt.datetime:
        return min(p.new.first_seen for p in self.pairs)

    @property
    def last_pair_at(self) -> dt.datetime:
        return max(p.new.first_seen for p in self.pairs)


def shape_changes(found: list[Proposal]) -> list[ShapeChange]:
    groups: dict[tuple[str, str], ShapeChange] = {}
    for proposal in found:
        pair = (proposal.old.shape, proposal.new.shape)
        groups.setdefault(pair, ShapeChange(*pair)).pairs.append(proposal)
    return sorted(groups.values(), key=lambda g: -len(g.pairs))


def _new_learners(session: Session, client_id: int, shape: str, since: dt.datetime) -> int:
    return session.scalar(select(func.count()).select_from(Learner).where(
        Learner.client_id == client_id, Learner.id_shape == shape, Learner.first_seen >= since)) or 0


def check_client(session: Session, client: Client, now: dt.datetime, review_url: str | None = None
                 ) -> list[IdentityDrift]:
    """Open, update or close this client's drift episodes; alert for the ones opened now. Commits."""
    changes = {(c.from_shape, c.to_shape): c for c in shape_changes(proposals(session, client, now))
               if len(c.pairs) >= MIN_PAIRS}
    open_episodes = {(e.from_shape, e.to_shape): e for e in session.scalars(select(IdentityDrift).where(
        IdentityDrift.client_id == client.id, IdentityDrift.closed_at.is_(None)))}
    opened = []
    for pair, change in changes.items():
        new_learners = _new_learners(session, client.id, change.to_shape, change.since)
        episode = open_episodes.pop(pair, None)
        if episode is not None:
            episode.pairs, episode.new_learners, episode.checked_at = len(change.pairs), new_learners, now
            episode.last_pair_at = max(episode.last_pair_at, change.last_pair_at)
            continue
        episode = IdentityDrift(client_id=client.id, from_shape=change.from_shape, to_shape=change.to_shape,
                                since=change.since, pairs=len(change.pairs), new_learners=new_learners,
                                detected_at=now, checked_at=now, last_pair_at=change.last_pair_at)
        session.add(episode)
        session.flush()
        facts = {"from_shape": change.from_shape, "to_shape": change.to_shape,
                 "since": change.since.isoformat(), "pairs": len(change.pairs), "new_learners": new_learners,
                 "window_days": WINDOW_DAYS, "drift": episode.id}
        if review_url:
            facts["review_url"] = review_url
        outbox.enqueue(session, "identity.drift", client.id, facts, now, f"identity.drift:{episode.id}")
        opened.append(episode)
    for episode in open_episodes.values():
        # Its pairs may all be merged already: the episode lasts until a window passes without a new pair.
        episode.pairs, episode.checked_at = 0, now
        if episode.last_pair_at < _window_start(now):
            episode.closed_at = now
    session.commit()
    return opened


def check_drift(session: Session, now: dt.datetime | None = None, clients: list[Client] | None = None,
                review_url=None) -> list[IdentityDrift]:
    """Every active client (or those given); ``review_url(client)`` names the review page. Commits."""
    now = now or utcnow()
    if clients is None:
        clients = list(session.scalars(select(Client).where(Client.active.is_(True)).order_by(Client.id)))
    opened = []
    for client in clients:
        opened += check_client(session, client, now, review_url(client) if review_url else None)
    return opened


def open_drifts(session: Session, client: Client) -> list[IdentityDrift]:
    return list(session.scalars(select(IdentityDrift).where(IdentityDrift.client_id == client.id)
                                .order_by(IdentityDrift.closed_at.is_not(None), IdentityDrift.detected_at.desc())
                                .limit(20)))


# --- merging proposals and their effect on billing ---------------------------------------


class ProposalGone(ValueError):
    """The pair is no longer proposed (merged meanwhile, or new data changed it)."""


def accept(session: Session, client: Client, keys: list[str] | None, *, actor: str,
           now: dt.datetime | None = None, min_confidence: float = 0.0, commit: bool = True) -> list[Proposal]:
    """Merge the proposals named by ``keys`` (all of them when None) at or above ``min_confidence``."""
    current = {p.key: p for p in proposals(session, client, now)}
    if keys is None:
        chosen = [p for p in current.values() if p.confidence >= min_confidence]
    else:
        missing = [k for k in keys if k not in current]
        if missing:
            raise ProposalGone("that pair is no longer proposed (merged already, or new launches changed it)")
        chosen = [current[k] for k in keys]
    # Proposals are disjoint pairs of learners merged into nobody: the pointers are set once at the end,
    # and the learners are loaded up front (a lookup per pair would flush the merges added so far).
    ids = sorted({learner_id for p in chosen for learner_id in (p.old.learner_id, p.new.learner_id)})
    learners = {}
    for chunk in range(0, len(ids), 500):
        learners.update((learner.id, learner) for learner in session.scalars(
            select(Learner).where(Learner.id.in_(ids[chunk:chunk + 500]))))
    with session.no_autoflush:
        for proposal in chosen:
            merges.merge(session, client, learners[proposal.old.learner_id], learners[proposal.new.learner_id],
                         actor=actor, source="proposal", evidence=proposal.evidence, commit=False, apply=False)
    merges.apply_merges(session, client.id)
    if commit:
        session.commit()
    return chosen


@dataclass(frozen=True)
class PeriodEffect:
    label: str
    period: Period
    before: int
    after: int


def preview(session: Session, client: Client, keys: list[str] | None, today: dt.date,
            now: dt.datetime | None = None) -> list[PeriodEffect]:
    """Unique learners of this period and the last, before and after merging these proposals.

    The merges are made in the session's transaction, counted by the very
    functions billing uses, and rolled back: the preview is the effect.
    """
    period = current_period(client, today)
    periods = [("this period", period), ("last period", period.previous())]
    before = [billing.unique_users(session, client.id, p.start, p.end) for _, p in periods]
    try:
        accept(session, client, keys, actor="preview", now=now, commit=False)
        session.flush()
        after = [billing.unique_users(session, client.id, p.start, p.end) for _, p in periods]
    finally:
        session.rollback()
    return [PeriodEffect(label, p, b, a) for (label, p), b, a in zip(periods, before, after, strict=True)]
