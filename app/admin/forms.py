"""The admin's forms (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    FormField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms import Form as PlainForm
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from app.clients.services import ClientError, normalise_origin
from app.identity.placeholders import clean_placeholder_ids
from app.identity.student_ids import InvalidIdentity
from app.models import LICENCES, ROLES
from app.staff.auth.tokens import TokenCreateForm
from app.staff.services import MIN_PASSWORD_LENGTH


def choices(pairs) -> list[SelectChoice]:
    """WTForms 3.3 wants SelectChoice objects (tuples are deprecated)."""
    return [SelectChoice(value, label) for value, label in pairs]


LICENCE_CHOICES = [("subscription", "Subscription (tracked: beacons counted)"),
                   ("perpetual", "Perpetual (untracked packages, no beacons)")]
assert [c[0] for c in LICENCE_CHOICES] == list(LICENCES)
ROLE_CHOICES = [(r, r) for r in ROLES]


def local_http() -> bool:
    """http://localhost origins are for development only."""
    return current_app.config["APP_ENV"] != "production"


def placeholder_lines(text: str | None) -> list[str]:
    """One placeholder per line (a comma may be part of one, so lines only)."""
    return [line for line in (text or "").splitlines() if line.strip()]


def origin_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class TermFields(PlainForm):
    """A licence term's dates and seat limit: the Licence page's term form and the client form's term in force."""
    starts_on = DateField("Starts on", validators=[DataRequired()])
    ends_on = DateField("Ends on (inclusive)", validators=[DataRequired()])
    seat_limit = IntegerField("Seat limit", validators=[Optional(), NumberRange(min=0)])


NO_CSM_LABEL = "None: every CSM gets its alerts"


class ClientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Give the client a name."), Length(max=200)])
    active = BooleanField("Active (beacons with its keys are accepted)", default=True)
    licence = SelectField("Licence", choices=choices(LICENCE_CHOICES), default="subscription")
    origins = TextAreaField("Allowed LMS origins: one https://host[:port] per line, no path, no wildcard "
                            "(none: any origin)",
                            render_kw={"rows": 4, "placeholder": "https://lms.example.com"})
    placeholder_ids = TextAreaField("Placeholder student IDs: one per line; beacons with one are held back",
                                    render_kw={"rows": 8, "spellcheck": "false"})

    # Choices: "" (none) and the e-mails of csm_candidates (set by the view); checked by the service.
    csm = SelectField("Customer success manager (gets the client's alert e-mails)", choices=[],
                      validate_choice=False)
    # The licence term in force today (or a new one, when there is none): prefix "term-", as on the Licence page.
    term = FormField(TermFields, label="Licence term in force", separator="-")

    confirm_duplicate = BooleanField("Yes, use this name although another client has it")

    def validate_placeholder_ids(self, field):
        try:
            clean_placeholder_ids(placeholder_lines(field.data))
        except InvalidIdentity as exc:
            raise ValidationError(str(exc)) from None

    def validate_origins(self, field):
        bad = []
        for line in origin_lines(field.data):
            try:
                normalise_origin(line, local_http=local_http())
            except ClientError as exc:
                bad.append(str(exc))
        if bad:
            raise ValidationError("; ".join(bad))



class NewClientForm(ClientForm):
    """Creating a client may give it its first licence term (as ``client create --seat-limit``);
    afterwards terms are edited on the client's Licence page only."""

    anonymised = BooleanField("Anonymised: store learners as pseudonyms from the first beacon")
    licence_start = DateField("First licence term starts", validators=[Optional()])
    licence_end = DateField("First licence term ends (inclusive)", validators=[Optional()])
    seat_limit = IntegerField("Seat limit of the first term (unique learners over the term)",
                              validators=[Optional(), NumberRange(min=0, message="Zero or more.")])

    def validate_licence_end(self, field):
        if field.data and self.licence_start.data and field.data < self.licence_start.data:
            raise ValidationError("The licence term cannot end before it starts.")
    # A new client starts with the default placeholder list; its settings page edits it.
    placeholder_ids = None
    term = None


class RotateKeyForm(FlaskForm):
    grace_hours = IntegerField("Old keys keep working for (hours)", default=72,
                               validators=[InputRequired(message="Say how long the old key keeps working."),
                                           NumberRange(min=0, max=24 * 365, message="0 to 8760 hours.")])
    confirm = BooleanField("Yes, issue a new key: packages built before stop working after the grace period",
                           validators=[DataRequired(message="tick the box to confirm the rotation.")])


class HeldBackReleaseForm(FlaskForm):
    placeholder = HiddenField()
    confirm = BooleanField("Yes, count these beacons: each placeholder becomes one learner in every figure",
                           validators=[DataRequired(message="Tick the box to confirm the release.")])


class ModeForm(FlaskForm):
    confirm_name = StringField("Type the client's name to confirm",
                               validators=[DataRequired(message="Type the client's name to confirm.")])


class PackageForm(FlaskForm):
    course_title = StringField("Course title", validators=[DataRequired(message="Give the course a title."),
                                                           Length(max=300)])
    scorm_version = SelectField("Format", default="1.2",
                                choices=choices([("1.2", "SCORM 1.2"), ("2004", "SCORM 2004 (4th ed.)"),
                                                 ("content", "cmi5 or xAPI (Tin Can): from the content's "
                                                             "cmi5.xml or tincan.xml")]))
    mode = SelectField("Kind", choices=choices([
        ("deployed", "Deployed: the course inside the zip"),
        ("remote", "Remote: a thin launcher; the course loads from this server and can be republished"),
    ]), default="deployed")
    content = FileField("Course content (optional zip)")


class RepublishForm(FlaskForm):
    content = FileField("New version of the course (a zip of the same format)",
                        validators=[FileRequired(message="Choose the course's zip to upload.")])
    confirm = BooleanField("Yes, publish it: every LMS shows this version at the learner's next launch",
                           validators=[DataRequired(message="Tick the box to confirm the republish.")])


class StaffForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(message="Enter an e-mail address."), Length(max=255)])
    role = SelectField("Role", choices=choices(ROLE_CHOICES), default="csm")
    client = SelectField("Client (for the client role only)", choices=[], validate_choice=False)
    password = PasswordField("Initial password", validators=[
        DataRequired(message="Set an initial password."),
        Length(min=MIN_PASSWORD_LENGTH, max=1024, message=f"At least {MIN_PASSWORD_LENGTH} characters.")])


PASSWORD_RULE = (f"At least {MIN_PASSWORD_LENGTH} characters, and not easy to guess (no common password, repeat, "
                 "or the e-mail address); a few unrelated words are easiest to type.")


class PasswordResetForm(FlaskForm):
    password = PasswordField("New password", validators=[
        DataRequired(message="Type the new password."),
        Length(min=MIN_PASSWORD_LENGTH, max=1024, message=f"At least {MIN_PASSWORD_LENGTH} characters.")])


class SecondFactorResetForm(FlaskForm):
    confirm = BooleanField("Confirm", validators=[DataRequired(message="Tick to confirm.")])


class StaffTokenCreateForm(TokenCreateForm):
    """An admin's: a token for any active staff user (its kind is that user's role, and client for ``client``)."""
    owner = SelectField("Owner", validators=[InputRequired(message="Choose whose token it is.")])


class PackageKeyRevokeForm(FlaskForm):
    confirm = BooleanField("Yes, revoke this package's key: its beacons are refused from now on",
                           validators=[DataRequired(message="tick the box to confirm.")])


class StaffChangeForm(FlaskForm):
    role = SelectField("Role", choices=choices(ROLE_CHOICES))
    client = SelectField("Client", choices=[], validate_choice=False)
    active = BooleanField("Active")
    unlock = BooleanField("Unlock after failed sign-ins")
    all_client_alerts = BooleanField("E-mail every client's alerts")
