"""Beacons held back because their student ID is a placeholder (see ``placeholders``).

Kept beside ``models.py`` (which it builds on; ``create_app`` loads every model module). A held-back
beacon is acknowledged and kept here, never in ``events`` or ``daily_usage``,
so no count sees it; releasing it (``ingest.held_back``) writes it there,
once, and marks the row released (kept, so a retried beacon stays a duplicate).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import BigId, UTCDateTime, utcnow


class HeldBackBeacon(db.Model):
    """One beacon whose student ID matched the client's placeholder list.

    ``identity`` and ``name`` are stored as a learner's would be: the
    normalised ID and the name for verbatim clients, a pseudonym and a keyed
    digest for anonymised ones. ``placeholder`` is the policy entry that
    matched (a copy of the client's configuration, not of learner data), so
    every face can say why the beacon is held back, in either mode.
    """

    __tablename__ = "held_back_beacons"
    __table_args__ = (Index("ix_held_back_beacons_client_released", "client_id", "released_at", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    identity: Mapped[str] = mapped_column(String(255))
    pseudonymised: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(255))
    placeholder: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    lms_host: Mapped[str | None] = mapped_column(String(255))
    scorm_version: Mapped[str | None] = mapped_column(String(16))
    package_id: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(255))
