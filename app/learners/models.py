"""The data of identity merges: one person's two identities merged (and undone), and
the ID-scheme drifts the check found.

Kept beside ``models.py`` (which it builds on; ``create_app`` loads every model module), as
``licensing/models.py`` is. ``learners/merges.py`` merges and unmerges;
``billing/drift.py`` detects drifts and proposes pairs.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models import BigId, Learner, UTCDateTime, utcnow


class LearnerMerge(db.Model):
    """``learner`` was merged into ``into`` (both of one client); ``undone_at`` once unmerged.

    The merges in force (``undone_at`` NULL) decide every learner's
    ``merged_into_id``; undone ones stay as the record of what was done.
    ``evidence`` is what the proposal showed (shapes, dates, confidence): no
    plain ID or name for anonymised clients.
    """

    __tablename__ = "learner_merges"
    __table_args__ = (Index("ix_learner_merges_client_created", "client_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(BigId, ForeignKey("learners.id", ondelete="CASCADE"), index=True)
    into_learner_id: Mapped[int] = mapped_column(BigId, ForeignKey("learners.id", ondelete="CASCADE"),
                                                 index=True)
    # "proposal" (from the drift review) or "manual" (the CLI naming both IDs).
    source: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[dict | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone_by: Mapped[str | None] = mapped_column(String(255))
    undone_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    learner: Mapped[Learner] = relationship(foreign_keys=[learner_id])
    into: Mapped[Learner] = relationship(foreign_keys=[into_learner_id])


class IdentityDrift(db.Model):
    """One drift episode: a client's new learners arrive under another ID shape and match
    learners already known. Alerted once (when opened); closed when no new pair has
    appeared for a whole detection window."""

    __tablename__ = "identity_drifts"
    __table_args__ = (Index("ix_identity_drifts_client_closed", "client_id", "closed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    from_shape: Mapped[str] = mapped_column(String(16))
    to_shape: Mapped[str] = mapped_column(String(16))
    # The first new-shape learner that matched (UTC), and the figures at the last check.
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    pairs: Mapped[int] = mapped_column(Integer, default=0)
    new_learners: Mapped[int] = mapped_column(Integer, default=0)
    detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_pair_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
