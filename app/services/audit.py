"""The audit log: who changed what on which client, before and after."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..models import AuditEntry


def record(session: Session, actor: str, action: str, client_id: int | None = None,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    """Add an audit entry to the caller's transaction (the caller commits)."""
    entry = AuditEntry(actor=actor, action=action, client_id=client_id, before=before, after=after)
    session.add(entry)
    return entry
