"""The data of licences: terms and alert contacts.

Built on ``app/models.py`` (``create_app`` loads every domain's model module). The events a
licence causes (alerts, webhooks) are outbound's: ``outbound/models.py``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models import Client, UTCDateTime, utcnow

# How seats are counted within a term: unique learners over the whole term, or
# per calendar month or calendar year (each cut to the term).
SEAT_WINDOWS = ("term", "month", "year")
# What happens at the seat limit (and after the last term ended).
AT_LIMIT = ("record", "block")


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
