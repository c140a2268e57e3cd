"""The data: clients, their courses and learners, beacon events, daily usage,
staff, tokens and the audit log.

Times are stored as UTC and always come back timezone-aware (``UTCDateTime``).
Billing reads ``DailyUsage`` and, for origins, packages and statuses, ``DailySource`` and
``DailyOutcome``, all written with each event; ``Event`` is the raw, deduplicated record.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("admin", "csm", "billing", "client")
LICENCES = ("subscription", "perpetual")
EVENT_KINDS = ("launch", "completed", "passed", "failed")
COMPLETION_KINDS = ("completed", "passed")
# The statuses a course reports (every kind but a launch): ``daily_outcomes`` keeps them per day.
STATUS_KINDS = ("completed", "passed", "failed")


class Client(db.Model):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    anonymised: Mapped[bool] = mapped_column(Boolean, default=False)
    # Sealed packages: the client's own key seals IDs and names in the learner's browser (implies anonymised).
    sealed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Random per-client salt for pseudonyms; NULL once crypto-shredded.
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    pseudonym_time_cost: Mapped[int] = mapped_column(Integer)
    pseudonym_memory_kib: Mapped[int] = mapped_column(Integer)
    pseudonym_parallelism: Mapped[int] = mapped_column(Integer)
    licence: Mapped[str] = mapped_column(String(20), default="subscription")
    # The licence period and seat limit live in licence terms (licensing/models.py: LicenceTerm) only.
    # Exact origins ("https://lms.example.com"); empty means any origin.
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Placeholder student IDs held back from counts (case-folded); NULL: the defaults
    # (placeholders.DEFAULT_PLACEHOLDER_IDS), so a client that never chose follows them.
    placeholder_ids: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    keys: Mapped[list[ClientKey]] = relationship(back_populates="client", cascade="all, delete-orphan")
    # The client's customer success manager (a staff user of role csm or admin): its alert e-mails go
    # to them (and to staff who opted in to every client's); none: to every active CSM. Kept in
    # ``client_csms`` (one row per client), not a column: clients and staff_users already refer one way.
    csm: Mapped[StaffUser | None] = relationship(secondary="client_csms", uselist=False)

    @property
    def tracked(self) -> bool:
        return self.licence != "perpetual"


class ClientKey(db.Model):
    """A beacon key. Stored as a SHA-256 digest; shown once when made."""

    __tablename__ = "client_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # NULL: valid until rotated. Set on rotation to the end of the grace period, or to the
    # moment a package's key is revoked.
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The package issue that carries this key (NULL: the client's own key, in no package).
    package_issue_id: Mapped[int | None] = mapped_column(ForeignKey("package_issues.id", ondelete="SET NULL"),
                                                         index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))

    client: Mapped[Client] = relationship(back_populates="keys")
    package_issue: Mapped[PackageIssue | None] = relationship()

    def valid_at(self, when: dt.datetime) -> bool:
        return self.expires_at is None or self.expires_at > when


class Course(db.Model):
    __tablename__ = "courses"
    __table_args__ = (UniqueConstraint("client_id", "title"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Learner(db.Model):
    """One learner of one client.

    ``identity`` is the normalised student ID for verbatim clients, or its
    pseudonym (``pseudonymised`` true). ``name`` is the name as the LMS sent it,
    or a keyed digest of it for anonymised clients: never the plain name.
    ``id_shape`` is the class of the plain ID (``identity.id_shape``), never the
    value; NULL for anonymised learners stored before shapes were kept, until
    they return. ``merged_into_id`` names the learner this one was merged into
    (the end of the chain of merges, see ``learners/merges.py``): billing
    counts both as that one.
    """

    __tablename__ = "learners"
    __table_args__ = (UniqueConstraint("client_id", "identity"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    identity: Mapped[str] = mapped_column(String(255))
    pseudonymised: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(255))
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    id_shape: Mapped[str | None] = mapped_column(String(16))
    merged_into_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("learners.id", ondelete="SET NULL"), index=True)


class Event(db.Model):
    """One beacon as received, stored once per event ID."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_client_received", "client_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("learners.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The name as sent with this beacon (keyed digest for anonymised clients),
    # kept per event so the go-live check can see names that change.
    learner_name: Mapped[str | None] = mapped_column(String(255))
    lms_host: Mapped[str | None] = mapped_column(String(255))
    scorm_version: Mapped[str | None] = mapped_column(String(16))
    package_id: Mapped[str | None] = mapped_column(String(64))


class DailyUsage(db.Model):
    """A learner's use of a course on one UTC day: the unit billing counts."""

    __tablename__ = "daily_usage"
    __table_args__ = (
        UniqueConstraint("client_id", "course_id", "learner_id", "day"),
        Index("ix_daily_usage_client_day", "client_id", "day"),
        Index("ix_daily_usage_learner", "learner_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(BigId, ForeignKey("learners.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    launches: Mapped[int] = mapped_column(Integer, default=0)
    completions: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# What ``daily_sources`` stores for an event without an LMS host or a package ID: a unique key
# must not hold NULLs (NULLs never conflict, on SQLite or PostgreSQL). Billing reads it back as None.
NO_SOURCE = ""


class DailySource(db.Model):
    """A learner's use of a course on one UTC day from one LMS host with one package ID.

    One row per (client, course, learner, day, host, package) of any event kind, so the
    breakdowns by LMS origin and by package count people and launches from here, never from
    ``events``. A missing host or package ID is stored as ``NO_SOURCE``.
    """

    __tablename__ = "daily_sources"
    __table_args__ = (
        # Named: the generated name (every column) is longer than PostgreSQL's 63 characters.
        UniqueConstraint("client_id", "course_id", "learner_id", "day", "lms_host", "package_id",
                         name="uq_daily_sources_day_source"),
        Index("ix_daily_sources_client_day", "client_id", "day"),
        Index("ix_daily_sources_learner", "learner_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(BigId, ForeignKey("learners.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    lms_host: Mapped[str] = mapped_column(String(255), default=NO_SOURCE)
    package_id: Mapped[str] = mapped_column(String(64), default=NO_SOURCE)
    launches: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DailyOutcome(db.Model):
    """A status (``completed``, ``passed``, ``failed``) a course reported for a learner on one UTC day:
    the first and last time of that day. The learners' outcomes are read from here."""

    __tablename__ = "daily_outcomes"
    __table_args__ = (
        UniqueConstraint("client_id", "course_id", "learner_id", "day", "kind"),
        Index("ix_daily_outcomes_client_day", "client_id", "day"),
        Index("ix_daily_outcomes_learner", "learner_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(BigId, ForeignKey("learners.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefusedOrigin(db.Model):
    """Beacons refused because their Origin is not one of the client's LMS hosts."""

    __tablename__ = "refused_origins"
    __table_args__ = (UniqueConstraint("client_id", "origin"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(255))
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PackageIssue(db.Model):
    """A package built for a client: who, which course, which kind, when."""

    __tablename__ = "package_issues"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    course_title: Mapped[str] = mapped_column(String(300))
    scorm_version: Mapped[str] = mapped_column(String(8))
    # deployed | remote | untracked (perpetual licence)
    mode: Mapped[str] = mapped_column(String(16))
    issued_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RemoteContent(db.Model):
    """A remote package's course: the name of its current version in the content store.

    The files live in the content store (``CONTENT_DIR``), content-addressed, so
    every app machine reaching the store serves them; a republish writes a new
    version and points ``content_version`` at it. ``launch_file`` is the first
    SCO's page, ``sco_count`` the number of SCO items the thin package on the LMS
    holds; ``beacon_key`` is the package's own beacon key, written into the
    tracker served with the content (it is as public as a deployed package's key).
    """

    __tablename__ = "remote_contents"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("package_issues.package_id", ondelete="CASCADE"), unique=True)
    launch_file: Mapped[str] = mapped_column(String(1000))
    beacon_key: Mapped[str] = mapped_column(String(255))
    content_version: Mapped[str] = mapped_column(String(32))
    content_bytes: Mapped[int] = mapped_column(BigInteger)
    sco_count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class StaffUser(db.Model):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Second factor (app/staff/second_factor.py): a TOTP secret (base32), the last time step
    # accepted (a code is good once), and passkeys and recovery codes in their own tables.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # "E-mail me every client's alerts" (admins and CSMs): besides each client's own CSM.
    all_client_alerts: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    client: Mapped[Client | None] = relationship()
    passkeys: Mapped[list[WebAuthnCredential]] = relationship(back_populates="staff_user",
                                                               cascade="all, delete-orphan")

    # Flask-Login: the cookie names the login session, not the user, so a
    # revoked session (logout) cannot be replayed.
    session_token = None
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str | None:
        return self.session_token

    def can_see_client(self, client: Client) -> bool:
        if self.role in ("admin", "csm", "billing"):
            return True
        return self.role == "client" and self.client_id == client.id


class ClientCsm(db.Model):
    """A client's customer success manager (``Client.csm``); deleting either ends the assignment."""

    __tablename__ = "client_csms"

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)


class StaffSession(db.Model):
    """A login. The session cookie names it; logout revokes it for good."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last request seen (updated at most once a minute): SESSION_IDLE_MINUTES counts from here.
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    staff_user: Mapped[StaffUser] = relationship()


class WebAuthnCredential(db.Model):
    """A passkey (WebAuthn credential) a staff user signs in with: its public key, never a secret."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    staff_user: Mapped[StaffUser] = relationship(back_populates="passkeys")


class RecoveryCode(db.Model):
    """A one-time code for a staff user who lost their second factor, stored as a SHA-256 digest."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(db.Model):
    """A bearer token for the JSON API, stored as a SHA-256 digest."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(String(100))
    # The first characters of the token ("tk_" and 8 more): lists and `token revoke` name it by them.
    token_prefix: Mapped[str | None] = mapped_column(String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None only for tokens issued before tokens expired.
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    staff_user: Mapped[StaffUser] = relationship()


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_client_created", "client_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "alice@example.com", or "cli" for the operator's command line.
    actor: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
