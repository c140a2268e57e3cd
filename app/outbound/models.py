"""The data of outbound events: webhook endpoints, the outbox and its deliveries.

The outbox is written in the same transaction as the change that causes it (a beacon, a
licence crossing, a drift); ``outbound/outbox.py`` fans it out and delivers it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models import BigId, Client, UTCDateTime, utcnow
from app.secretbox import EncryptedString

OUTBOX_STATES = ("pending", "delivered", "dead")


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
