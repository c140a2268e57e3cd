"""Admin: the audit log, filtered by client."""

from __future__ import annotations

from flask import abort, render_template, request

from ..extensions import db
from ..services import audit as audit_service
from ..services import clients as client_service
from . import bp


@bp.get("/audit")
def audit_log():
    all_clients = client_service.all_clients(db.session)
    slug = request.args.get("client") or ""
    selected = None
    if slug:
        selected = next((c for c in all_clients if c.slug == slug), None)
        if selected is None:
            abort(404)
    entries, _ = audit_service.entries(db.session, client_id=selected.id if selected else None)
    names = {c.id: c.name for c in all_clients}
    return render_template("admin/audit.html", entries=entries, clients=all_clients, selected=selected,
                           names=names)
