"""Admin: the audit log, by client and date range, a page at a time, and as CSV."""

from __future__ import annotations

import datetime as dt
import json

from flask import abort, render_template, request

from app import audit as audit_service
from app.admin import bp
from app.billing.exports import csv_response
from app.clients import services as client_service
from app.extensions import db

PER_PAGE = 100
CSV_LIMIT = 100_000
AUDIT_CSV_COLUMNS = ("created_at", "actor", "client", "action", "before", "after")


def _date(name: str) -> dt.date | None:
    value = (request.args.get(name) or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        abort(400, description=f"'{name}' must be a date as YYYY-MM-DD.")


def _filters(all_clients):
    slug = request.args.get("client") or ""
    selected = None
    if slug:
        selected = next((c for c in all_clients if c.slug == slug), None)
        if selected is None:
            abort(404)
    start, end = _date("from"), _date("to")
    if start and end and start > end:
        abort(400, description="'from' must not be after 'to'.")
    return selected, start, end


@bp.get("/audit")
def audit_log():
    all_clients = client_service.all_clients(db.session)
    selected, start, end = _filters(all_clients)
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1
    entries, total = audit_service.entries(db.session, client_id=selected.id if selected else None, start=start,
                                           end=end, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    pages = max(1, -(-total // PER_PAGE))
    names = {c.id: f"{c.name} ({c.slug})" for c in all_clients}
    args = {k: v for k, v in (("client", selected.slug if selected else ""),
                              ("from", start.isoformat() if start else ""),
                              ("to", end.isoformat() if end else "")) if v}
    return render_template("admin/audit.html", entries=entries, clients=all_clients, selected=selected,
                           names=names, start=start, end=end, page=page, pages=pages, total=total, args=args)


@bp.get("/audit.csv")
def audit_csv():
    all_clients = client_service.all_clients(db.session)
    selected, start, end = _filters(all_clients)
    entries, _ = audit_service.entries(db.session, client_id=selected.id if selected else None, start=start,
                                       end=end, limit=CSV_LIMIT)
    slugs = {c.id: c.slug for c in all_clients}
    name = "-".join(["audit", selected.slug if selected else "all", start.isoformat() if start else "start",
                     end.isoformat() if end else "today"])
    return csv_response(f"{name}.csv", AUDIT_CSV_COLUMNS, (
        [e.created_at, e.actor, slugs.get(e.client_id, ""), e.action,
         json.dumps(e.before, sort_keys=True) if e.before is not None else "",
         json.dumps(e.after, sort_keys=True) if e.after is not None else ""] for e in entries))
