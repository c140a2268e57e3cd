"""What billing's faces accept and return: the usage API's queries and answers (also in /api/openapi.json),
and the query strings of the billing pages and CSVs (a date range; for the learner list search, sort, page)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.billing.figures import LEARNER_SORTS
from app.schemas import CourseFilter

OVERVIEW_SORTS = ("name", "unique_users", "seat_limit", "seat_use", "trend", "forecast")


class RangeQuerySchema(Schema):
    """``from``/``to`` (YYYY-MM-DD, UTC, inclusive); both optional, the default is the current period to date;
    ``course``: one course only.

    Order and length are checked by ``licensing.periods.requested_range``, the one rule for every face.
    """

    from_ = fields.Date(data_key="from", load_default=None)
    to = fields.Date(load_default=None)
    # Only this course (the course filter); empty or absent: every course.
    course = CourseFilter(load_default=None)


class LearnerQuerySchema(RangeQuerySchema):
    q = fields.String(load_default="", validate=validate.Length(max=200))
    sort = fields.String(load_default="last_access", validate=validate.OneOf(LEARNER_SORTS))
    dir = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class OverviewQuerySchema(Schema):
    sort = fields.String(load_default="name", validate=validate.OneOf(OVERVIEW_SORTS))
    dir = fields.String(load_default="asc", validate=validate.OneOf(("asc", "desc")))


# --- the usage API ----------------------------------------------------------------------


class UsageQuerySchema(Schema):
    """Order and length (at most ``MAX_RANGE_DAYS``) are checked by ``licensing.periods.checked_range``,
    the same rule as the pages and CSVs."""

    from_ = fields.Date(data_key="from", required=True, metadata={"description": "First day, inclusive (UTC)."})
    to = fields.Date(required=True, metadata={"description": "Last day, inclusive (UTC); the range may span "
                                                            "at most 1096 days."})
    course = CourseFilter(load_default=None, metadata={
        "description": "Only this course (its title as the package reports it); a title the client has "
                       "no course of is a 400. Seat figures stay the client's."})


class UsageDaySchema(Schema):
    date = fields.Date(required=True)
    unique_users = fields.Integer(required=True)
    launches = fields.Integer(required=True)


class UsageCourseSchema(Schema):
    course = fields.String(required=True)
    unique_users = fields.Integer(required=True, metadata={"description": "Distinct learners over the range."})
    launches = fields.Integer(required=True)
    completers = fields.Integer(required=True, metadata={
        "description": "Distinct learners with a `completed` or `passed` beacon for the course in the range."})
    days = fields.List(fields.Nested(UsageDaySchema), required=True)


class HeldBackReasonSchema(Schema):
    placeholder = fields.String(required=True, metadata={"description": "The placeholder-list entry matched."})
    beacons = fields.Integer(required=True)
    launches = fields.Integer(required=True)


class HeldBackSchema(Schema):
    beacons = fields.Integer(required=True, metadata={"description": "Held-back beacons that arrived in the range."})
    launches = fields.Integer(required=True)
    reasons = fields.List(fields.Nested(HeldBackReasonSchema), required=True)


class SeatsSchema(Schema):
    """Seat figures of one seat window: what a finance team invoices."""

    seat_limit = fields.Integer(required=True, allow_none=True, metadata={
        "description": "Seats bought for the window (the term's limit); null: no limit."})
    seats_used = fields.Integer(required=True, metadata={
        "description": "Distinct learners in the whole seat window (merged identities once)."})
    overage = fields.Integer(required=True, allow_none=True, metadata={
        "description": "Seats used beyond the limit, 0 within it; null without a limit."})
    billable_seats = fields.Integer(required=True, metadata={
        "description": "max(seats_used, seat_limit); seats_used without a limit."})


class RangeSeatsSchema(SeatsSchema):
    term_start = fields.Date(required=True)
    term_end = fields.Date(required=True, metadata={"description": "Inclusive."})
    seat_window = fields.String(required=True, metadata={"description": "`term`, `month` or `year`."})
    window_start = fields.Date(required=True)
    window_end = fields.Date(required=True, metadata={"description": "Inclusive."})


class OriginUsageSchema(Schema):
    lms_host = fields.String(required=True, allow_none=True, metadata={
        "description": "The LMS host the beacons came from (their Origin); null when the browser sent none."})
    unique_users = fields.Integer(required=True, metadata={"description": "Distinct learners from this origin."})
    launches = fields.Integer(required=True)


class PackageIssuedSchema(Schema):
    course = fields.String(required=True)
    scorm_version = fields.String(required=True)
    mode = fields.String(required=True, metadata={"description": "`deployed`, `remote` or `untracked`."})
    issued_at = fields.DateTime(required=True)


class PackageUsageSchema(Schema):
    package = fields.String(required=True, allow_none=True, metadata={
        "description": "The package ID the beacons carried; null for beacons without one (older packages)."})
    unique_users = fields.Integer(required=True, metadata={"description": "Distinct learners of this package."})
    launches = fields.Integer(required=True)
    issued = fields.Nested(PackageIssuedSchema, required=True, allow_none=True, metadata={
        "description": "The package this server issued to the client under that ID; null if none."})


class PreviousUsageSchema(Schema):
    """The same totals over the range just before the one asked for, of the same length."""

    from_ = fields.Date(data_key="from", required=True, metadata={
        "description": "First day of the previous range: as many days before `from` as the range is long."})
    to = fields.Date(required=True, metadata={"description": "The day before `from` (inclusive)."})
    unique_users = fields.Integer(required=True, metadata={
        "description": "Distinct learners over the previous range (the same course filter)."})
    launches = fields.Integer(required=True)
    completers = fields.Integer(required=True, metadata={
        "description": "Distinct learners with a `completed` or `passed` beacon in the previous range."})


class UsageSchema(Schema):
    client = fields.String(required=True, metadata={"description": "The client's slug."})
    from_ = fields.Date(data_key="from", required=True)
    to = fields.Date(required=True)
    course = fields.String(required=True, allow_none=True, metadata={
        "description": "The course asked for with `course=`; null for every course."})
    unique_users = fields.Integer(
        required=True, metadata={"description": "Distinct learners over the range (not a sum of days)."})
    launches = fields.Integer(required=True)
    completers = fields.Integer(required=True, metadata={
        "description": "Distinct learners with a `completed` or `passed` beacon in the range (any course)."})
    previous = fields.Nested(PreviousUsageSchema, required=True, allow_none=True, metadata={
        "description": "The same totals for the previous range of the same length, ending the day before "
                       "`from` (2026-10-01..2026-10-31: 2026-08-31..2026-09-30), to compare with; null only "
                       "when that range would begin before the year 1."})
    courses = fields.List(fields.Nested(UsageCourseSchema), required=True)
    origins = fields.List(fields.Nested(OriginUsageSchema), required=True, metadata={
        "description": "Per LMS origin, most learners first: a learner from two origins counts in each."})
    packages = fields.List(fields.Nested(PackageUsageSchema), required=True, metadata={
        "description": "Per package ID, most learners first: a learner of two packages counts in each."})
    seats = fields.Nested(RangeSeatsSchema, required=True, allow_none=True, metadata={
        "description": "The seat figures of the licence seat window that holds the whole range; null when no "
                       "term is in force or the range spans more than one seat window."})
    held_back = fields.Nested(
        HeldBackSchema, required=True,
        metadata={"description": "Beacons whose student ID is a placeholder (e.g. `undefined`), kept but counted "
                                 "in no figure above until a CSM releases them."})


class ClientsQuerySchema(Schema):
    """The invoice export's day: the seat window that contains it (default today, UTC)."""

    on = fields.Date(load_default=None, metadata={
        "description": "A day (YYYY-MM-DD, UTC, not after today): each client's seat window containing it. "
                       "Default today; the last day of a past window gives its final figures."})


class TermSchema(Schema):
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True, metadata={"description": "Inclusive."})
    seat_limit = fields.Integer(required=True, allow_none=True)
    seat_window = fields.String(required=True, metadata={"description": "`term`, `month` or `year`."})
    at_limit = fields.String(required=True, metadata={"description": "`record` or `block`."})
    after_expiry = fields.String(required=True, metadata={"description": "`record` or `block`."})


class ForecastSchema(Schema):
    expected = fields.Integer(required=True, metadata={"description": "Seats expected at the window's end."})
    low = fields.Integer(required=True, metadata={"description": "90 % range, low end."})
    high = fields.Integer(required=True, metadata={"description": "90 % range, high end."})
    sureness = fields.String(required=True, metadata={
        "description": "`fairly sure`, `not sure yet`, `final` (the window has ended) or `not started`."})
    statement = fields.String(required=True, metadata={
        "description": "How sure and on what basis (`fairly sure`, `not sure yet (little data)`, final), "
                       "as the licence page says it."})


class ClientSummarySchema(SeatsSchema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    mode = fields.String(required=True, metadata={"description": "`verbatim` or `anonymised`."})
    active = fields.Boolean(required=True)
    term = fields.Nested(TermSchema, required=True, allow_none=True, metadata={
        "description": "The licence term in force on the day asked about; null without one."})
    window_start = fields.Date(required=True, metadata={
        "description": "The seat window (the term's, else the client's licence period, else the calendar month)."})
    window_end = fields.Date(required=True, metadata={"description": "Inclusive."})
    unique_users = fields.Integer(required=True, metadata={
        "description": "Distinct learners in the window: the same figure as `seats_used`."})
    launches = fields.Integer(required=True)
    forecast = fields.Nested(ForecastSchema, required=True)


class ClientListSchema(Schema):
    on = fields.Date(required=True, metadata={"description": "The day whose seat windows are given."})
    clients = fields.List(fields.Nested(ClientSummarySchema), required=True)
