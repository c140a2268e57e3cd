"""Billing pages and CSVs for people: per client (staff, or the client's own users) and the vendor overview.

Every figure comes from ``app.services.billing``, the same functions the usage
API calls. Client users see only their own client: any other slug is a 404.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from ..extensions import db, login_manager
from ..models import Client
from ..services import billing
from .api import visible_client
from .chart import daily_chart
from .exports import csv_response
from .schemas import LearnerQuerySchema, OverviewQuerySchema, RangeQuerySchema

bp = Blueprint("billing_pages", __name__, url_prefix="/billing")

STAFF_ROLES = ("admin", "csm", "billing")
LEARNERS_PER_PAGE = 50
USAGE_CSV_COLUMNS = ("date", "course", "unique_users", "launches")
LEARNERS_CSV_COLUMNS = ("student_id", "student_name", "course", "first_access", "last_access", "launches")
OVERVIEW_CSV_COLUMNS = ("client", "name", "period_start", "period_end", "unique_users", "seat_limit",
                        "seat_use_percent", "previous_unique_users", "trend_percent", "forecast_unique_users")

_range = RangeQuerySchema()
_learner_query = LearnerQuerySchema()
_overview_query = OverviewQuerySchema()


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _load(schema, args) -> dict:
    try:
        return schema.load(args.to_dict())
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(map(str, msgs))}"
                             for field, msgs in exc.normalized_messages().items())
        abort(400, description=f"Bad query ({problems}). Dates are YYYY-MM-DD.")


def _period(client: Client, query: dict) -> billing.Period:
    default = billing.current_period(client, billing.today_utc())
    start = query.get("from_") or default.start
    end = query.get("to") or default.end
    if start > end:
        abort(400, description="'from' must not be after 'to'. Dates are YYYY-MM-DD.")
    return billing.Period(start, end)


def _filename(client: Client, what: str, period: billing.Period) -> str:
    return f"{client.slug}-{what}-{period.start.isoformat()}-{period.end.isoformat()}.csv"


@bp.get("/")
def overview():
    if current_user.role not in STAFF_ROLES:
        if current_user.client is None:
            abort(404)
        return redirect(url_for(".client_usage", slug=current_user.client.slug))
    query = _load(_overview_query, request.args)
    today = billing.today_utc()
    rows = _sorted_overview(billing.overview(db.session, today), query["sort"], query["dir"] == "desc")
    return render_template("billing/overview.html", rows=rows, today=today, sort=query["sort"], dir=query["dir"])


def _sorted_overview(rows: list[billing.ClientOverview], sort: str, descending: bool):
    def key(row):
        value = row.name.casefold() if sort == "name" else getattr(row, sort)
        # Rows without a figure (no seat limit, no previous users) go last either way.
        return (value is None, value if value is not None else 0, row.name.casefold())

    present = sorted((r for r in rows if key(r)[0] is False), key=key, reverse=descending)
    missing = sorted((r for r in rows if key(r)[0] is True), key=lambda r: r.name.casefold())
    return present + missing


@bp.get("/overview.csv")
def overview_csv():
    if current_user.role not in STAFF_ROLES:
        abort(404)
    today = billing.today_utc()
    rows = billing.overview(db.session, today)
    return csv_response(
        f"billing-overview-{today.isoformat()}.csv", OVERVIEW_CSV_COLUMNS,
        ([row.slug, row.name, row.period.start, row.period.end, row.unique_users, row.seat_limit,
          _percent(row.seat_use), row.previous_unique_users, _percent(row.trend), row.forecast] for row in rows),
    )


def _percent(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio * 100:.1f}"


@bp.get("/<slug>")
def client_usage(slug: str):
    client = visible_client(current_user, slug)
    period = _period(client, _load(_range, request.args))
    session, start, end = db.session, period.start, period.end
    users = billing.unique_users(session, client.id, start, end)
    days = billing.daily_totals(session, client.id, start, end)
    cells = billing.course_days(session, client.id, start, end)
    course_days = {(row.day, row.course): row for row in cells}
    usage_days = sorted({row.day for row in cells})
    return render_template(
        "billing/client.html", client=client, period=period,
        default_period=billing.current_period(client, billing.today_utc()),
        unique_users=users, launches=billing.launches(session, client.id, start, end),
        completers=billing.completers(session, client.id, start, end),
        courses=billing.course_totals(session, client.id, start, end), course_days=course_days, usage_days=usage_days,
        chart=daily_chart(days, start, end, billing.today_utc()), has_usage=bool(days),
        seat_use=(users / client.seat_limit) if client.seat_limit else None,
        milestones=billing.milestones(session, client.id),
    )


@bp.get("/<slug>/usage.csv")
def usage_csv(slug: str):
    client = visible_client(current_user, slug)
    period = _period(client, _load(_range, request.args))
    rows = billing.course_days(db.session, client.id, period.start, period.end)
    return csv_response(_filename(client, "usage", period), USAGE_CSV_COLUMNS,
                        ([row.day, row.course, row.unique_users, row.launches] for row in rows))


@bp.get("/<slug>/learners.csv")
def learners_csv(slug: str):
    client = visible_client(current_user, slug)
    period = _period(client, _load(_range, request.args))
    rows = billing.learner_courses(db.session, client.id, period.start, period.end)
    return csv_response(
        _filename(client, "learners", period), LEARNERS_CSV_COLUMNS,
        ([row.identity, "" if row.pseudonymised else (row.name or ""), row.course, row.first_access,
          row.last_access, row.launches] for row in rows),
    )


@bp.get("/<slug>/learners")
def learners(slug: str):
    client = visible_client(current_user, slug)
    query = _load(_learner_query, request.args)
    period = _period(client, query)
    rows, total = billing.learner_summaries(
        db.session, client.id, period.start, period.end, search=query["q"], sort=query["sort"],
        descending=query["dir"] == "desc", limit=LEARNERS_PER_PAGE, offset=(query["page"] - 1) * LEARNERS_PER_PAGE,
    )
    titles = billing.learner_course_titles(db.session, client.id, [r.learner_id for r in rows],
                                           period.start, period.end)
    pages = max(1, -(-total // LEARNERS_PER_PAGE))
    return render_template("billing/learners.html", client=client, period=period, rows=rows, titles=titles,
                           total=total, query=query, page=query["page"], pages=pages)


@bp.get("/<slug>/learners/<int:learner_id>")
def learner(slug: str, learner_id: int):
    client = visible_client(current_user, slug)
    found = billing.find_learner(db.session, client.id, learner_id)
    if found is None:
        abort(404)
    events = billing.learner_events(db.session, client.id, learner_id)
    return render_template("billing/learner.html", client=client, learner=found, events=events,
                           reference=billing.short_reference(found.identity) if found.pseudonymised
                           else found.identity)


@bp.app_template_filter("percent")
def percent_filter(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.1f} %"


@bp.app_template_filter("utc")
def utc_filter(value: dt.datetime | None) -> str:
    return "–" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
