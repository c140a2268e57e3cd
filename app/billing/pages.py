"""Billing pages and CSVs for people: per client (staff, or the client's own users) and the vendor overview.

Every figure comes from ``app.billing.figures``, the same functions the usage
API calls. Client users see only their own client: any other slug is a 404.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from app.billing import figures as billing
from app.billing.api import QueryError, invoice_day, visible_client
from app.billing.chart import usage_chart
from app.billing.exports import csv_response
from app.billing.schemas import LearnerQuerySchema, OverviewQuerySchema, RangeQuerySchema
from app.extensions import db, login_manager
from app.identity.student_ids import short_reference
from app.ingest import held_back
from app.licensing import licences, periods
from app.licensing import terms as licence_terms
from app.licensing.periods import Period
from app.models import Client, Course
from app.staff.auth import bearer_user, token_refused

bp = Blueprint("billing_pages", __name__, url_prefix="/billing")

STAFF_ROLES = ("admin", "csm", "billing")
LEARNERS_PER_PAGE = 50
USAGE_CSV_COLUMNS = ("date", "course", "unique_users", "launches")
TOTAL_LABEL, ALL_COURSES_LABEL = "total", "(all courses)"
# usage.csv's rows of held-back beacons: "held_back:<placeholder>" in the date column (counted nowhere).
HELD_BACK_LABEL = "held_back:"
# status: the last one the course reported in the range (completed, passed, failed), else "launched";
# completed_at/passed_at/failed_at: the first time of each in the range (empty if never).
LEARNERS_CSV_COLUMNS = ("student_id", "student_name", "course", "first_access", "last_access", "launches",
                        "status", "completed_at", "passed_at", "failed_at")
# The invoice export: one row per client for the seat window that contains ``on`` (README, "Invoicing").
# period_start/period_end are that seat window; seats_used equals unique_users (distinct learners in it).
OVERVIEW_CSV_COLUMNS = ("client", "name", "mode", "term_start", "term_end", "seat_window", "period_start",
                        "period_end", "seat_limit", "seats_used", "overage", "billable_seats", "unique_users",
                        "launches", "seat_use_percent", "previous_unique_users", "trend_percent",
                        "forecast_unique_users", "forecast_low", "forecast_high", "forecast_sureness",
                        "forecast_note")

_range_query = RangeQuerySchema()
_learner_query = LearnerQuerySchema()
_overview_query = OverviewQuerySchema()


@bp.context_processor
def _range_limits() -> dict:
    return {"max_range_days": periods.MAX_RANGE_DAYS, "daily_up_to": periods.DAILY_UP_TO,
            "weekly_up_to": periods.WEEKLY_UP_TO}


# Pages that answer a bearer token (Authorization: Bearer) as well as a signed-in user.
TOKEN_ENDPOINTS = ("billing_pages.overview_csv", "billing_pages.usage_csv", "billing_pages.learners_csv")


@bp.before_request
def _signed_in():
    if request.endpoint in TOKEN_ENDPOINTS and "Authorization" in request.headers:
        user = bearer_user()
        if user is None:
            return token_refused()
        g.billing_user = user
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _viewer():
    """Who asks: the bearer token's user on a token endpoint, else the signed-in user."""
    return g.get("billing_user") or current_user


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in exc.normalized_messages().items())


def _load(schema, args) -> dict:
    try:
        return schema.load(args.to_dict())
    except ValidationError as exc:
        abort(400, description=f"Bad query ({_problems(exc)}). Dates are YYYY-MM-DD.")


def _range(client: Client, args) -> tuple[Period, Course | None]:
    """The range and course a CSV answers; a bad one is a 400 with the reason."""
    query = _load(_range_query, args)
    try:
        period = periods.requested_range(client, query["from_"], query["to"], periods.today_utc())
    except periods.RangeError as exc:
        abort(400, description=f"{exc}. Dates are YYYY-MM-DD.")
    return period, _course(client, query)


def _page_range(client: Client, schema, args) -> tuple[dict, Period, str | None]:
    """(query, range, error) for a page: a bad range shows the default one with the reason by the form."""
    today = periods.today_utc()
    try:
        query = schema.load(args.to_dict())
        return query, periods.requested_range(client, query["from_"], query["to"], today), None
    except ValidationError as exc:
        error = f"Bad query ({_problems(exc)}). Dates are YYYY-MM-DD."
    except periods.RangeError as exc:
        error = f"Not shown: {exc} (dates are YYYY-MM-DD). Showing the default range instead."
    rest = args.copy()
    for name in ("from", "to", "course"):
        rest.poplist(name)
    return _load(schema, rest), periods.requested_range(client, None, None, today), error


UNKNOWN_COURSE = "this client has no course with that title (titles as the package reports them)"


def _course(client: Client, query: dict) -> Course | None:
    """The course a CSV is filtered to (None: every course); 400 when the client has none of that title."""
    if query["course"] is None:
        return None
    course = billing.find_course(db.session, client.id, query["course"])
    if course is None:
        abort(400, description=f"Bad query (course: {UNKNOWN_COURSE}).")
    return course


def _page_course(client: Client, query: dict, error: str | None) -> tuple[Course | None, str | None]:
    """(course, error) for a page: an unknown course shows every course, with the reason by the form."""
    if query["course"] is None:
        return None, error
    course = billing.find_course(db.session, client.id, query["course"])
    if course is None:
        return None, error or f"Not shown: {UNKNOWN_COURSE}. Showing every course instead."
    return course, error


def _presets(client: Client, today) -> list[tuple[str, Period]]:
    """This month, last month, this licence period to date (when the period is the licence), last 90 days."""
    this_month = periods.month_of(today)
    last_month = periods.month_of(this_month.start - dt.timedelta(days=1))
    found = [("This month", this_month.to_date(today)), ("Last month", last_month)]
    if _licence_period(client, today):
        current = periods.current_period(client, today)
        found.append(("This licence period to date", periods.capped(current.to_date(today))))
    found.append(("Last 90 days", Period(today - dt.timedelta(days=89), today)))
    return found


def _licence_period(client: Client, today) -> bool:
    """Is the client's current period its licence's (a term's seat window or the licence period), not the month?"""
    return periods.current_period(client, today) != periods.month_of(today)


def _filename(client: Client, what: str, period: Period, course: Course | None = None) -> str:
    # A filtered CSV says so in its name (the course's row id: a title may hold any character).
    which = "" if course is None else f"-course{course.id}"
    return f"{client.slug}-{what}{which}-{period.start.isoformat()}-{period.end.isoformat()}.csv"


@bp.get("/")
def overview():
    if current_user.role not in STAFF_ROLES:
        if current_user.client is None:
            abort(404)
        return redirect(url_for(".client_usage", slug=current_user.client.slug))
    query = _load(_overview_query, request.args)
    today = periods.today_utc()
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
    if _viewer().role not in STAFF_ROLES:
        abort(404)
    try:
        on = invoice_day(request.args)
    except QueryError as exc:
        abort(400, description=f"Bad query: {exc}.")
    rows = billing.overview(db.session, periods.today_utc(), on=on)
    return csv_response(f"billing-overview-{on.isoformat()}.csv", OVERVIEW_CSV_COLUMNS,
                        (_overview_csv_row(row) for row in rows))


def _overview_csv_row(row: billing.ClientOverview) -> list:
    term, outlook = row.term, row.outlook
    return [row.slug, row.name, "anonymised" if row.anonymised else "verbatim",
            term.starts_on if term else None, term.ends_on if term else None, term.seat_window if term else None,
            row.period.start, row.period.end, row.seat_limit, row.seats_used, row.overage, row.billable_seats,
            row.unique_users, row.launches, _percent(row.seat_use), row.previous_unique_users, _percent(row.trend),
            outlook.expected, outlook.low, outlook.high, row.sureness, outlook.statement]


def _percent(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio * 100:.1f}"


@bp.get("/<slug>")
def client_usage(slug: str):
    client = visible_client(current_user, slug)
    query, period, error = _page_range(client, _range_query, request.args)
    course, error = _page_course(client, query, error)
    session, start, end = db.session, period.start, period.end
    course_id = None if course is None else course.id
    today = periods.today_utc()
    figures = billing.range_figures(session, client.id, period, course_id)
    # Seats are the client's whatever the course filter: a seat is a learner of any course.
    seats_used = figures.unique_users if course is None else billing.unique_users(session, client.id, start, end)
    unit = periods.chart_unit(period)
    parts = periods.slices(period, unit)
    totals = (billing.daily_totals(session, client.id, start, end, course_id) if unit == "day"
              else billing.slice_totals(session, client.id, parts, course_id))
    cells = billing.course_days(session, client.id, start, end, course_id)
    course_days = {(row.day, row.course): row for row in cells}
    usage_days = sorted({row.day for row in cells})
    # Seats only for a range that is a seat window (to date): "Last 90 days" or a month before
    # the term began is a count of learners, not seats against the limit.
    seats_of = licences.range_seat_window(session, client.id, period)
    limit = seats_of[0].seat_limit if seats_of else None
    term_today = licences.term_in_force(session, client.id, today)
    return render_template(
        "billing/client.html", client=client, period=period, error=error, presets=_presets(client, today),
        form_values=request.args if error else None,
        default_period=periods.requested_range(client, None, None, today),
        licence_period=_licence_period(client, today),
        course=course, all_courses=billing.client_courses(session, client.id),
        figures=figures, comparison=billing.comparison(session, client.id, figures, course_id),
        courses=billing.course_totals(session, client.id, start, end, course_id), course_days=course_days,
        origins=billing.origin_usage(session, client.id, start, end, course_id),
        packages=billing.package_usage(session, client.id, start, end, course_id),
        usage_days=usage_days, chart=usage_chart(totals, parts, unit, today), has_usage=bool(totals),
        seat_limit=limit, seats_used=seats_used, seat_use=(seats_used / limit) if limit else None,
        seat_window=seats_of[1] if seats_of else None, term_today=term_today,
        window_today=licences.seat_window(term_today, today) if term_today else None,
        milestones=billing.milestones(session, client.id),
        held_back=held_back.figures(session, client.id, start, end, course_id=course_id),
    ), 400 if error else 200


@bp.get("/<slug>/licence")
def client_terms(slug: str):
    """A client's licence terms, read-only, for vendor staff (billing included): the term in force with
    its seat window, limit, seats used and enforcement, and every term. Admins and CSMs edit them in the
    admin; client users have no such page (404)."""
    if current_user.role not in STAFF_ROLES:
        abort(404)
    client = visible_client(current_user, slug)
    session, today = db.session, periods.today_utc()
    term = licences.term_in_force(session, client.id, today)
    window = seats = outlook = None
    if term is not None:
        window = licences.seat_window(term, today)
        seats = licences.seats_used(session, client.id, window)
        outlook = licences.term_forecast(session, client.id, term, today)
    all_terms = licence_terms.terms(session, client.id)
    return render_template("billing/terms.html", client=client, term=term, window=window, seats=seats,
                           outlook=outlook, terms=all_terms, today=today,
                           after_last=None if term is not None or not all_terms else all_terms[-1])


@bp.get("/<slug>/usage.csv")
def usage_csv(slug: str):
    client = visible_client(_viewer(), slug)
    period, course = _range(client, request.args)
    session, start, end = db.session, period.start, period.end
    course_id = None if course is None else course.id
    rows = [[row.day, row.course, row.unique_users, row.launches]
            for row in billing.course_days(session, client.id, start, end, course_id)]
    # The billable totals: distinct learners over the range, labelled so nobody takes them for sums.
    rows += [[TOTAL_LABEL, total.course, total.unique_users, total.launches]
             for total in billing.course_totals(session, client.id, start, end, course_id)]
    # The last total is every course's, or (filtered) the course's again under the same label.
    rows.append([TOTAL_LABEL, ALL_COURSES_LABEL, billing.unique_users(session, client.id, start, end, course_id),
                 billing.launches(session, client.id, start, end, course_id)])
    # Then what was held back for a placeholder student ID, and which one: no unique users, its launches.
    rows += [[HELD_BACK_LABEL + reason.placeholder, reason.course, 0, reason.launches]
             for reason in held_back.figures(session, client.id, start, end, course_id=course_id).by_course]
    return csv_response(_filename(client, "usage", period, course), USAGE_CSV_COLUMNS, rows)


@bp.get("/<slug>/learners.csv")
def learners_csv(slug: str):
    client = visible_client(_viewer(), slug)
    period, course = _range(client, request.args)
    rows = billing.learner_courses(db.session, client.id, period.start, period.end,
                                   None if course is None else course.id)
    return csv_response(
        _filename(client, "learners", period, course), LEARNERS_CSV_COLUMNS,
        ([row.identity, "" if row.pseudonymised else (row.name or ""), row.course, row.first_access,
          row.last_access, row.launches, row.outcome.status, row.outcome.completed_at, row.outcome.passed_at,
          row.outcome.failed_at] for row in rows),
    )


@bp.get("/<slug>/learners")
def learners(slug: str):
    client = visible_client(current_user, slug)
    query, period, error = _page_range(client, _learner_query, request.args)
    course, error = _page_course(client, query, error)
    course_id = None if course is None else course.id
    rows, total = billing.learner_summaries(
        db.session, client.id, period.start, period.end, search=query["q"], sort=query["sort"],
        descending=query["dir"] == "desc", limit=LEARNERS_PER_PAGE, offset=(query["page"] - 1) * LEARNERS_PER_PAGE,
        course_id=course_id,
    )
    titles = billing.learner_course_titles(db.session, client.id, [r.learner_id for r in rows],
                                           period.start, period.end, course_id)
    pages = max(1, -(-total // LEARNERS_PER_PAGE))
    return render_template("billing/learners.html", client=client, period=period, rows=rows, titles=titles,
                           total=total, query=query, page=query["page"], pages=pages, course=course,
                           error=error, presets=_presets(client, periods.today_utc()),
                           form_values=request.args if error else None), 400 if error else 200


@bp.get("/<slug>/learners/<int:learner_id>")
def learner(slug: str, learner_id: int):
    client = visible_client(current_user, slug)
    found = billing.find_learner(db.session, client.id, learner_id)
    if found is None:
        abort(404)
    events = billing.learner_events(db.session, client.id, learner_id)
    return render_template("billing/learner.html", client=client, learner=found, events=events,
                           reference=short_reference(found.identity) if found.pseudonymised
                           else found.identity)


@bp.app_template_filter("percent")
def percent_filter(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.1f} %"


@bp.app_template_filter("change")
def change_filter(change: billing.Change) -> str:
    """A figure's change against the previous range: "+5 (+12.5 %)", "−3 (−7.5 %)", "+4 (new)" when
    the previous range had none (no percentage of nothing), "no change" when equal."""
    if change.difference == 0:
        return "no change"
    sign = "+" if change.difference > 0 else "\u2212"
    if change.ratio is None:
        return f"{sign}{abs(change.difference)} (new)"
    return f"{sign}{abs(change.difference)} ({sign}{abs(change.ratio) * 100:.1f} %)"


@bp.app_template_filter("utc")
def utc_filter(value: dt.datetime | None) -> str:
    return "–" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
