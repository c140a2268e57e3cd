"""marshmallow fields and schemas every JSON face shares: normalised IDs, names and titles, and errors.

Each face keeps its own schemas beside it (``ingest/schemas.py``, ``billing/schemas.py``); the same
schemas validate requests and describe the API in /api/openapi.json.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields

from app.identity.student_ids import (
    InvalidIdentity,
    has_control_characters,
    normalise_course_title,
    normalise_name,
    normalise_student_id,
)


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


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "A machine-readable error code."})
    message = fields.String(metadata={"description": "What went wrong, for people."})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Per-field messages (invalid_beacon)."})
