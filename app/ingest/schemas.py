"""What POST /api/v1/beacons accepts (and /api/openapi.json describes)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import EVENT_KINDS
from app.schemas import CourseTitle, PlainText, StudentId, StudentName


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
