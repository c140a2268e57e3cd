"""GET /api/v1/clients/<slug>/usage: unique users per course and date, for bearer tokens."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select

from ..auth import token_required
from ..extensions import db
from ..models import Client
from ..schemas import UsageQuerySchema, UsageSchema
from ..services import periods
from ..services.billing import usage_report

bp = Blueprint("billing_api", __name__, url_prefix="/api/v1")

_query = UsageQuerySchema()
_usage = UsageSchema()


def visible_client(user, slug: str) -> Client:
    """The client named by ``slug`` if this user may see it; 404 otherwise (no hint it exists)."""
    client = db.session.scalar(select(Client).where(Client.slug == slug))
    if client is None or not user.can_see_client(client):
        abort(404)
    return client


@bp.get("/clients/<slug>/usage")
@token_required
def usage(slug: str):
    client = visible_client(g.api_user, slug)
    try:
        args = _query.load(request.args.to_dict())
    except ValidationError as exc:
        response = jsonify({"error": "invalid_query", "message": "use from=YYYY-MM-DD&to=YYYY-MM-DD",
                            "fields": exc.normalized_messages()})
        response.status_code = 400
        return response
    try:
        period = periods.checked_range(args["from_"], args["to"])
    except periods.RangeError as exc:
        response = jsonify({"error": "invalid_query", "message": f"{exc}; use from=YYYY-MM-DD&to=YYYY-MM-DD",
                            "fields": {exc.field: [str(exc)]}})
        response.status_code = 400
        return response
    report = usage_report(db.session, client, period.start, period.end)
    return jsonify(_usage.dump(report))
