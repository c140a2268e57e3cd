"""marshmallow schemas: what the JSON API accepts and what it returns.

The same schemas validate requests and describe the API in /api/openapi.json.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from app.identity.student_ids import (
    InvalidIdentity,
    has_control_characters,
    normalise_course_title,
    normalise_name,
    normalise_student_id,
)
from app.models import EVENT_KINDS


class PlainText(fields.String):
    """Text without control characters or lone surrogates.

    A lone surrogate cannot be encoded for hashing or storage (it gave a 500),
    and PostgreSQL refuses NUL in text (a 503); both are the sender's mistake.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if has_control_characters(text):
            raise ValidationError("Contains control characters or invalid Unicode.")
        return text


class _Normalised(fields.String):
    """A string field whose value is normalised by a function from identity/student_ids.py."""

    normaliser = staticmethod(lambda value: value)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.normaliser(text)
        except InvalidIdentity as exc:
            raise ValidationError(str(exc)) from None


class StudentId(_Normalised):
    normaliser = staticmethod(normalise_student_id)


class StudentName(_Normalised):
    normaliser = staticmethod(normalise_name)


class CourseTitle(_Normalised):
    normaliser = staticmethod(normalise_course_title)


class CourseFilter(CourseTitle):
    """The billing faces' ``course=``: a course title, normalised as ingest stores it; empty means
    every course (a form's "All courses")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not value.strip():
            return None
        return super()._deserialize(value, attr, data, **kwargs)


class BeaconSchema(Schema):
    """A beacon sent by a SCORM package when a learner opens it."""

    key = PlainText(required=True, validate=validate.Length(min=1, max=100),
                    metadata={"description": "The client's beacon key, written into the package."})
    course = CourseTitle(required=True, metadata={"description": "Course title as the package reports it."})
    student_id = StudentId(required=True, metadata={"description": "cmi.core.student_id / cmi.learner_id."})
    student_name = StudentName(required=True, metadata={"description": "cmi.core.student_name / cmi.learner_name."})
    event = fields.String(load_default="launch", validate=validate.OneOf(EVENT_KINDS))
    event_id = fields.UUID(load_default=None, allow_none=True,
                           metadata={"description": "Fresh UUID per beacon; a repeat is stored once."})
    scorm_version = fields.String(load_default=None, allow_none=True,
                                  validate=validate.OneOf(["1.2", "2004", "cmi5", "tincan"]),
                                  metadata={"description": "The package's format: SCORM 1.2 or 2004, cmi5, or "
                                                           "xAPI (Tin Can)."})
    package = PlainText(load_default=None, allow_none=True, validate=validate.Length(max=64),
                        metadata={"description": "The package ID written at build time."})
    placeholder = fields.Boolean(load_default=False,
                                 metadata={"description": "The tracker found a placeholder ID (\"undefined\", "
                                                          "\"null\", \"0\"...) before sealing it."})
    lms_origin = PlainText(load_default=None, allow_none=True,
                           validate=[validate.Length(max=255),
                                     validate.Regexp(r"^https?://[^/?#\s]+$", error="not an origin")],
                           metadata={"description": "A remote package's LMS origin (its beacons come from the "
                                                    "content origin); ignored from any other origin."})
    grant = PlainText(load_default=None, allow_none=True, validate=validate.Length(max=400),
                      metadata={"description": "The seat grant a remote package's launch obtained: while the "
                                               "client's licence blocks new learners, a new learner's beacon with "
                                               "a remote package's key takes a seat only with it (otherwise it is "
                                               "acknowledged and set aside, not counted)."})


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "A machine-readable error code."})
    message = fields.String(metadata={"description": "What went wrong, for people."})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Per-field messages (invalid_beacon)."})


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
