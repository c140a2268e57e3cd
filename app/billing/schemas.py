"""Query strings of the billing pages and CSVs: a date range, and for the learner list search, sort, page."""

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
