"""The data of licences that act: terms, alert contacts, webhook endpoints and the outbox.

Kept beside ``models.py`` (which it builds on; ``create_app`` loads every model module) so the licence
work stays in one place. The outbox is written in the same transaction as the
change that causes it; ``outbound/outbox.py`` delivers it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models import BigId, Client, UTCDateTime, utcnow
from app.secretbox import EncryptedString

# How seats are counted within a term: unique learners over the whole term, or
# per calendar month or calendar year (each cut to the term).
SEAT_WINDOWS = ("term", "month", "year")
# What happens at the seat limit (and after the last term ended).
AT_LIMIT = ("record", "block")
OUTBOX_STATES = ("pending", "delivered", "dead")


class LicenceTerm(db.Model):
    """One licence term of a client: dates (inclusive), seats, and how they are counted."""

    __tablename__ = "licence_terms"
    __table_args__ = (Index("ix_licence_terms_client_start", "client_id", "starts_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    seat_limit: Mapped[int | None] = mapped_column(Integer)
    seat_window: Mapped[str] = mapped_column(String(8), default="term")
    at_limit: Mapped[str] = mapped_column(String(8), default="record")
    after_expiry: Mapped[str] = mapped_column(String(8), default="record")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    client: Mapped[Client] = relationship()

    def as_dict(self) -> dict:
        return {"id": self.id, "starts_on": self.starts_on.isoformat(), "ends_on": self.ends_on.isoformat(),
                "seat_limit": self.seat_limit, "seat_window": self.seat_window, "at_limit": self.at_limit,
                "after_expiry": self.after_expiry}


class AlertContact(db.Model):
    """A client's named contact for licence alerts (besides the CSMs)."""

    __tablename__ = "alert_contacts"
    __table_args__ = (UniqueConstraint("client_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEndpoint(db.Model):
    """Where an integrator receives signed events; client NULL means every client."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # "whsec_" + base64; the server must keep it to sign (shown to the integrator once).
    # Stored as a Fernet token under WEBHOOK_SECRET_KEYS (app/secretbox.py), never plain.
    secret: Mapped[str] = mapped_column(EncryptedString(255))
    # Event types it wants; empty means every type.
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    client: Mapped[Client | None] = relationship()

    def wants(self, event_type: str, client_id: int | None) -> bool:
        """Whether this event is queued for it (also while paused: ``active`` only holds delivery)."""
        return ((self.client_id is None or self.client_id == client_id)
                and (not self.event_types or event_type in self.event_types))


class OutboxEvent(db.Model):
    """Something that happened and must leave the server (webhook and/or e-mail).

    The beacon path writes only ``type``, ``client_id``, the small ``facts`` and,
    for once-only events, a ``dedupe_key`` (unique: a second insert does nothing).
    The worker works out the full payload when it fans the event out into
    deliveries (``fanned_out_at``).
    """

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_fanned_out", "fanned_out_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    facts: Mapped[dict] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutboxDelivery(db.Model):
    """One event to one receiver: a webhook endpoint or an e-mail address.

    ``body`` is fixed at fan-out so every retry sends the same bytes under the
    same ``webhook-id``. A worker claims a delivery by moving ``next_attempt_at``
    past its own deadline (a lease): a worker killed mid-delivery loses nothing,
    the delivery is tried again once the lease has run out.
    """

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", "target"),
        Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # webhook | email
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                                                    index=True)
    # The endpoint id or the e-mail address.
    target: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[OutboxEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint | None] = relationship()


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
