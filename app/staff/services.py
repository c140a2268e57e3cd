"""Staff users, their passwords (Argon2id), login sessions and API tokens."""

from __future__ import annotations

import datetime as dt
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from app import audit
from app.clients.services import hash_secret_token
from app.models import ROLES, ApiToken, Client, StaffSession, StaffUser, utcnow

password_hasher = PasswordHasher()  # argon2-cffi's RFC 9106 low-memory profile (Argon2id)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
# zxcvbn's score (0-4): 4 is "very unguessable" (10^10 guesses or more: strong even against an
# offline attack on a stolen hash); it knows common passwords, names, words, keyboard walks, dates,
# repeats, and the context words given to it. Four unrelated words or a password manager's output pass.
MIN_PASSWORD_SCORE = 4
# Words that belong to this product and its users: a password built on them is easy to guess.
_CONTEXT_WORDS = ("scorm", "tracker", "utilisation", "usage", "billing", "admin", "csm", "staff", "elearning",
                  "learner", "course", "vendor", "password")
# After this many failed sign-ins in a row an account is locked for LOCKOUT_PERIOD.
LOCKOUT_THRESHOLD = 5
LOCKOUT_PERIOD = dt.timedelta(minutes=15)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so both cases take the same time. Made at the first
    such sign-in, not at import: a hash costs ~0.3 s of CPU, which every process start paid."""
    return password_hasher.hash(secrets.token_urlsafe(16))


class StaffError(ValueError):
    """Bad input for a staff operation; the message is safe to show."""


def normalise_email(email: str) -> str:
    value = (email or "").strip().casefold()
    if "@" not in value or len(value) > 255 or any(ch.isspace() for ch in value):
        raise StaffError("enter a valid e-mail address")
    return value


def check_password_strength(password: str, email: str = "", extra_words: tuple[str, ...] = ()) -> None:
    """Refuse a short, common or guessable password (zxcvbn), or one made of the e-mail or this product's words."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    email = (email or "").strip().casefold()
    local, _, domain = email.partition("@")
    words = [email, local, *domain.split("."), *_CONTEXT_WORDS, *extra_words]
    # zxcvbn's cost grows with length; what lies past its first 100 characters only adds strength.
    result = zxcvbn(password[:100], user_inputs=[w for w in words if w])
    if result["score"] < MIN_PASSWORD_SCORE:
        hint = result["feedback"].get("warning") or "it would be guessed quickly."
        advice = " ".join(result["feedback"].get("suggestions") or [])
        raise StaffError(f"that password is too easy to guess: {hint.rstrip('.')}. "
                         f"{advice or 'Use a few uncommon words or a password manager.'}".strip())


def staff_settings(user: StaffUser) -> dict:
    return {"email": user.email, "role": user.role, "client_id": user.client_id, "active": user.active,
            "all_client_alerts": bool(user.all_client_alerts)}


# Who can receive alert e-mails, and so opt in to every client's (outbox.STAFF_ALERT_ROLES).
ALERT_ROLES = ("admin", "csm")


def create_staff(session: Session, *, email: str, role: str, password: str, actor: str,
                 client: Client | None = None) -> StaffUser:
    """Create a staff user; ``client`` is required for (and only for) the client role. Commits."""
    email = normalise_email(email)
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if role == "client" and client is None:
        raise StaffError("a client user needs --client SLUG")
    if role != "client" and client is not None:
        raise StaffError("only client users belong to a client")
    check_password_strength(password, email)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise StaffError(f"a staff user {email} exists already")
    user = StaffUser(email=email, role=role, client_id=client.id if client else None,
                     password_hash=password_hasher.hash(password))
    session.add(user)
    session.flush()
    audit.record(session, actor, "staff.create", user.client_id, None, staff_settings(user))
    session.commit()
    return user


def check_password(session: Session, user: StaffUser | None, password: str) -> bool:
    """Verify a password in constant-ish time; rehash when the parameters were raised."""
    dummy = _dummy_hash()  # made at a process's first sign-in, known e-mail or not, so neither case stands out
    if user is None:
        try:
            password_hasher.verify(dummy, password)
        except VerificationError:
            pass
        return False
    try:
        password_hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    return True


def locked_until(user: StaffUser, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the account's lockout ends, or None when it may sign in."""
    now = now or utcnow()
    if user.locked_until is not None and user.locked_until > now:
        return user.locked_until
    return None


def record_failed_login(session: Session, user: StaffUser, now: dt.datetime | None = None) -> bool:
    """Count a failed sign-in; lock the account after LOCKOUT_THRESHOLD in a row. True: locked now. Commits.

    Kept in the database (not in process memory) so every machine behind the
    load balancer sees the same count.
    """
    now = now or utcnow()
    user.failed_logins = (user.failed_logins or 0) + 1
    locked = user.failed_logins >= LOCKOUT_THRESHOLD
    if locked:
        user.locked_until = now + LOCKOUT_PERIOD
        user.failed_logins = 0
        audit.record(session, "system", "staff.locked", user.client_id, None,
                     {"email": user.email, "locked_until": user.locked_until.isoformat()})
    session.commit()
    return locked


def record_successful_login(user: StaffUser) -> None:
    """Reset the failure count; the caller commits with the new login session."""
    user.failed_logins = 0
    user.locked_until = None


def update_staff(session: Session, user: StaffUser, *, actor: str, role: str | None = None,
                 active: bool | None = None, client: Client | None = None, unlock: bool = False,
                 all_client_alerts: bool | None = None) -> StaffUser:
    """Change a staff user's role, client, active flag (deactivating ends their sessions) or their
    "e-mail me every client's alerts" opt-in (admins and CSMs only; a new role without alerts drops it). Commits."""
    before = staff_settings(user)
    if role is not None:
        if role not in ROLES:
            raise StaffError(f"role must be one of {', '.join(ROLES)}")
        if role == "client" and client is None and user.client_id is None:
            raise StaffError("a client user needs a client")
        if role != "client":
            client = None
            user.client_id = None
        user.role = role
    if client is not None:
        if user.role != "client":
            raise StaffError("only client users belong to a client")
        user.client_id = client.id
    if active is not None:
        user.active = active
        if not active:
            for row in session.scalars(select(StaffSession).where(StaffSession.staff_user_id == user.id,
                                                                  StaffSession.revoked_at.is_(None))):
                row.revoked_at = utcnow()
    if all_client_alerts is not None:
        if all_client_alerts and user.role not in ALERT_ROLES:
            raise StaffError(f"only {' and '.join(ALERT_ROLES)} users receive alert e-mails")
        user.all_client_alerts = all_client_alerts
    if user.role not in ALERT_ROLES:
        user.all_client_alerts = False
    if unlock:
        user.failed_logins = 0
        user.locked_until = None
    after = staff_settings(user)
    if after != before or unlock:
        action = "staff.unlock" if unlock and after == before else "staff.update"
        audit.record(session, actor, action, user.client_id or before["client_id"], before, after)
    session.commit()
    return user


def all_staff(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.role, StaffUser.email)))


def find_staff(session: Session, email: str) -> StaffUser | None:
    try:
        email = normalise_email(email)
    except StaffError:
        return None
    return session.scalar(select(StaffUser).where(StaffUser.email == email))


def start_session(session: Session, user: StaffUser) -> str:
    """A new login session; returns the token the cookie carries. The caller commits."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(StaffSession(token_hash=hash_secret_token(token), staff_user_id=user.id, created_at=now,
                             last_seen_at=now))
    user.last_login_at = now
    return token


# A session's last request is written at most this often (not on every page).
_SEEN_EVERY = dt.timedelta(minutes=1)


def user_for_session(session: Session, token: str, *, idle: dt.timedelta | None = None,
                     absolute: dt.timedelta | None = None) -> StaffUser | None:
    """The signed-in user of a live session; one idle past ``idle`` or older than ``absolute`` ends for good.

    Checked on the server, whatever the cookie says. Commits when it ends a session or notes activity.
    """
    row = session.scalar(
        select(StaffSession).where(StaffSession.token_hash == hash_secret_token(token),
                                   StaffSession.revoked_at.is_(None))
    )
    if row is None or not row.staff_user.active:
        return None
    now = utcnow()
    last_seen = row.last_seen_at or row.created_at
    if (absolute is not None and now - row.created_at >= absolute) or (idle is not None and now - last_seen >= idle):
        row.revoked_at = now
        session.commit()
        return None
    if now - last_seen >= _SEEN_EVERY:
        row.last_seen_at = now
        session.commit()
    return row.staff_user


def end_session(session: Session, token: str) -> None:
    """Revoke a login session for good (a replayed cookie is refused). Commits."""
    row = session.scalar(select(StaffSession).where(StaffSession.token_hash == hash_secret_token(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()


TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 730
TOKEN_PREFIX_LENGTH = 11   # "tk_" and 8 characters
TOKEN_LABEL_LENGTH = 100   # ApiToken.label


def create_token(session: Session, user: StaffUser, *, actor: str, label: str | None = None,
                 days: int = TOKEN_DAYS) -> str:
    """A bearer token for the JSON API that expires after ``days``, shown once. Commits."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise StaffError(f"a token lasts 1 to {MAX_TOKEN_DAYS} days")
    if label is not None and len(label) > TOKEN_LABEL_LENGTH:
        raise StaffError(f"a token's name has at most {TOKEN_LABEL_LENGTH} characters")
    if not user.active:
        raise StaffError(f"{user.email} is inactive: a token of theirs would never work")
    token = "tk_" + secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(days=days)
    session.add(ApiToken(token_hash=hash_secret_token(token), staff_user_id=user.id, label=label,
                         token_prefix=token[:TOKEN_PREFIX_LENGTH], expires_at=expires))
    audit.record(session, actor, "token.create", user.client_id, None,
                 {"email": user.email, "label": label, "prefix": token[:TOKEN_PREFIX_LENGTH],
                  "expires_at": expires.isoformat()})
    session.commit()
    return token


def all_tokens(session: Session, owner: StaffUser | None = None) -> list[ApiToken]:
    """Every API token (or ``owner``'s), newest first (revoked and expired ones too, so the list tells the story)."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if owner is not None:
        query = query.where(ApiToken.staff_user_id == owner.id)
    return list(session.scalars(query))


def find_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def token_by_prefix(session: Session, prefix: str) -> ApiToken:
    """The one token whose prefix starts with ``prefix`` (at least "tk_" and 4 characters)."""
    prefix = (prefix or "").strip()
    if len(prefix) < 7 or not prefix.startswith("tk_"):
        raise StaffError("give the token's prefix as listed, e.g. tk_AbCd1234")
    rows = list(session.scalars(select(ApiToken).where(ApiToken.token_prefix.startswith(prefix[:TOKEN_PREFIX_LENGTH],
                                                                                       autoescape=True))))
    if not rows:
        raise StaffError(f"no token has the prefix {prefix}")
    if len(rows) > 1:
        raise StaffError(f"{len(rows)} tokens have the prefix {prefix}; give more of it")
    return rows[0]


def revoke_token(session: Session, token: ApiToken, *, actor: str) -> None:
    """End an API token for good. Audited; commits."""
    if token.revoked_at is not None:
        raise StaffError("this token was revoked already")
    token.revoked_at = utcnow()
    audit.record(session, actor, "token.revoke", token.staff_user.client_id,
                 {"email": token.staff_user.email, "prefix": token.token_prefix, "label": token.label},
                 {"revoked_at": token.revoked_at.isoformat()})
    session.commit()


def reset_password(session: Session, user: StaffUser, password: str, *, actor: str) -> int:
    """Set a new password, end every session the user has (signed in anywhere) and lift a lockout.

    Audited (never the password); commits. Returns how many sessions were ended.
    """
    check_password_strength(password, user.email)
    user.password_hash = password_hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    now = utcnow()
    ended = 0
    for row in session.scalars(select(StaffSession).where(StaffSession.staff_user_id == user.id,
                                                          StaffSession.revoked_at.is_(None))):
        row.revoked_at = now
        ended += 1
    audit.record(session, actor, "staff.reset_password", user.client_id, None,
                 {"email": user.email, "sessions_ended": ended})
    session.commit()
    return ended


def user_for_token(session: Session, token: str) -> StaffUser | None:
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_secret_token(token), ApiToken.revoked_at.is_(None))
    )
    if row is None or not row.staff_user.active:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row.staff_user
