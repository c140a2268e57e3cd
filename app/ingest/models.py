"""The data only ingest keeps: beacons set aside for want of a seat grant."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import BigId, UTCDateTime, utcnow


class SeatlessBeacon(db.Model):
    """A beacon set aside: it would have taken a new learner's seat while the client's licence
    blocks new learners, but came with a remote package's key and no seat grant (a package's key
    is public: anyone who opens the package can read it). Acknowledged and kept here, never
    counted: no seat, no bill, no webhook. The learner is kept only as a keyed digest of the
    student ID (``ingest.seatless.learner_digest``), in both modes."""

    __tablename__ = "seatless_beacons"
    __table_args__ = (Index("ix_seatless_beacons_client_received", "client_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    package_id: Mapped[str | None] = mapped_column(String(64))
    course: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    learner_digest: Mapped[str] = mapped_column(String(64), index=True)
    lms_host: Mapped[str | None] = mapped_column(String(255))
    # "no_grant" (none sent) or "bad_grant" (not ours, another package's or learner's, or too old)
    reason: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
