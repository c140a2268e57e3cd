"""The audit log: who changed what on which client, before and after."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AuditEntry


def record(session: Session, actor: str, action: str, client_id: int | None = None,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    """Add an audit entry to the caller's transaction (the caller commits)."""
    entry = AuditEntry(actor=actor, action=action, client_id=client_id, before=before, after=after)
    session.add(entry)
    return entry


def entries(session: Session, *, client_id: int | None = None, limit: int = 200, offset: int = 0,
            start: dt.date | None = None, end: dt.date | None = None) -> tuple[list[AuditEntry], int]:
    """Audit entries newest first (one page of them) and how many match, by client and UTC days."""
    where = []
    if client_id is not None:
        where.append(AuditEntry.client_id == client_id)
    if start is not None:
        where.append(AuditEntry.created_at >= dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC))
    if end is not None:
        where.append(AuditEntry.created_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(),
                                                                 tzinfo=dt.UTC))
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(select(AuditEntry).where(*where)
                           .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
                           .limit(limit).offset(offset))
    return list(rows), total
