"""The billing JSON API for bearer tokens: GET /api/v1/clients (each client's seat window, seats and
forecast: the invoice export) and GET /api/v1/clients/<slug>/usage (unique users per course and date)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select

from app.billing.figures import ClientOverview, find_course, overview, usage_report
from app.billing.schemas import ClientListSchema, ClientsQuerySchema, UsageQuerySchema, UsageSchema
from app.extensions import db
from app.licensing import periods
from app.models import Client
from app.staff.auth import token_required

bp = Blueprint("billing_api", __name__, url_prefix="/api/v1")

_query = UsageQuerySchema()
_usage = UsageSchema()
_clients_query = ClientsQuerySchema()
_client_list = ClientListSchema()


# No usage is older; the previous period and the forecast's look-back of a day near year 1 would not exist.
EARLIEST_INVOICE_DAY = dt.date(2000, 1, 1)


class QueryError(ValueError):
    """A query the API and the CSVs refuse with 400; ``fields`` says which parameter and why."""

    def __init__(self, message: str, fields: dict):
        super().__init__(message)
        self.fields = fields


def invoice_day(args) -> dt.date:
    """The ``on`` day of the invoice export (default today, UTC); QueryError for a bad or future one."""
    try:
        on = _clients_query.load(args.to_dict())["on"]
    except ValidationError as exc:
        raise QueryError("use on=YYYY-MM-DD (UTC)", exc.normalized_messages()) from None
    today = periods.today_utc()
    if on is not None and on > today:
        raise QueryError(f"'on' must not be after today ({today.isoformat()}, UTC)",
                         {"on": ["Must not be after today."]})
    if on is not None and on < EARLIEST_INVOICE_DAY:
        raise QueryError(f"'on' must not be before {EARLIEST_INVOICE_DAY.isoformat()}",
                         {"on": [f"Must not be before {EARLIEST_INVOICE_DAY.isoformat()}."]})
    return on or today


def visible_clients(user) -> list[Client]:
    """Every client for vendor staff, a client user's own only, by name."""
    query = select(Client).order_by(Client.name, Client.id)
    if user.role == "client":
        query = query.where(Client.id == user.client_id)
    return [client for client in db.session.scalars(query) if user.can_see_client(client)]


def _invalid(message: str, fields: dict):
    response = jsonify({"error": "invalid_query", "message": message, "fields": fields})
    response.status_code = 400
    return response


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
        return _invalid("use from=YYYY-MM-DD&to=YYYY-MM-DD", exc.normalized_messages())
    try:
        period = periods.checked_range(args["from_"], args["to"])
    except periods.RangeError as exc:
        return _invalid(f"{exc}; use from=YYYY-MM-DD&to=YYYY-MM-DD", {exc.field: [str(exc)]})
    course = None
    if args["course"] is not None:
        course = find_course(db.session, client.id, args["course"])
        if course is None:
            return _invalid("this client has no course with that title (as the package reports it)",
                            {"course": ["Unknown course for this client."]})
    report = usage_report(db.session, client, period.start, period.end, course)
    return jsonify(_usage.dump(report))


@bp.get("/clients")
@token_required
def clients():
    try:
        on = invoice_day(request.args)
    except QueryError as exc:
        return _invalid(str(exc), exc.fields)
    rows = overview(db.session, periods.today_utc(), on=on, clients=visible_clients(g.api_user))
    return jsonify(_client_list.dump({"on": on, "clients": [client_summary(row) for row in rows]}))


def client_summary(row: ClientOverview) -> dict:
    term = row.term
    return {
        "slug": row.slug, "name": row.name, "mode": "anonymised" if row.anonymised else "verbatim",
        "active": row.active,
        "term": None if term is None else {
            "starts_on": term.starts_on, "ends_on": term.ends_on, "seat_limit": term.seat_limit,
            "seat_window": term.seat_window, "at_limit": term.at_limit, "after_expiry": term.after_expiry},
        "window_start": row.period.start, "window_end": row.period.end,
        "seat_limit": row.seat_limit, "seats_used": row.seats_used, "overage": row.overage,
        "billable_seats": row.billable_seats, "unique_users": row.unique_users, "launches": row.launches,
        "forecast": {"expected": row.outlook.expected, "low": row.outlook.low, "high": row.outlook.high,
                     "sureness": row.sureness, "statement": row.outlook.statement},
    }
