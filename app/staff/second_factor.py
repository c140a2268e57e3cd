"""Staff second factor: passkeys (WebAuthn, py_webauthn), TOTP (pyotp) and one-time recovery codes.

Services take a session and plain values and never touch ``request``: the sign-in face keeps the
WebAuthn challenge in the signed session cookie and hands it back here to verify.
"""

from __future__ import annotations

import json
import secrets

import pyotp
import webauthn
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app import audit
from app.clients.services import hash_secret_token
from app.models import RecoveryCode, StaffSession, StaffUser, WebAuthnCredential, utcnow

# Roles that hold other organisations' personal data and must have a second factor when required.
REQUIRED_ROLES = ("admin", "csm")
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "SCORM usage tracker"


class SecondFactorError(ValueError):
    """A second factor was refused; the message is safe to show."""


def has_second_factor(user: StaffUser) -> bool:
    return bool(user.totp_secret) or bool(user.passkeys)


def must_enrol(user: StaffUser, policy: str) -> bool:
    """True when this user may not sign in without enrolling a second factor first."""
    return policy == "required" and user.role in REQUIRED_ROLES and not has_second_factor(user)


# --- TOTP -----------------------------------------------------------------------------------------

def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str, at=None) -> int | None:
    """The time step whose code this is (this one or one either side, for clock drift), or None."""
    code = "".join((code or "").split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = at or utcnow()
    step = totp.timecode(now)
    for offset in (0, -1, 1):
        if secrets.compare_digest(totp.generate_otp(step + offset), code):
            return step + offset
    return None


def enrol_totp(session: Session, user: StaffUser, secret: str, code: str, *, actor: str) -> None:
    """Keep ``secret`` as the user's TOTP once they proved their app computes it. Audited; the caller commits."""
    step = _matching_step(secret, code)
    if step is None:
        raise SecondFactorError("that code does not match: check the app's clock and type the code it shows now")
    user.totp_secret, user.totp_last_step = secret, step
    audit.record(session, actor, "staff.second_factor_added", user.client_id, None,
                 {"email": user.email, "kind": "totp"})


def verify_totp(user: StaffUser, code: str) -> bool:
    """A current code, each good once (a replayed or older one is refused). The caller commits."""
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


# --- recovery codes -------------------------------------------------------------------------------

def new_recovery_codes(session: Session, user: StaffUser, *, actor: str) -> list[str]:
    """Replace the user's recovery codes with fresh ones, shown once. Audited; the caller commits."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.staff_user_id == user.id))
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        session.add(RecoveryCode(staff_user_id=user.id, code_hash=hash_secret_token(code)))
    audit.record(session, actor, "staff.recovery_codes", user.client_id, None,
                 {"email": user.email, "count": len(codes)})
    return codes


def unused_recovery_codes(session: Session, user: StaffUser) -> int:
    return len(list(session.scalars(select(RecoveryCode.id).where(RecoveryCode.staff_user_id == user.id,
                                                                  RecoveryCode.used_at.is_(None)))))


def use_recovery_code(session: Session, user: StaffUser, code: str) -> bool:
    """Spend one recovery code (each works once). Audited; the caller commits."""
    code = (code or "").strip().lower()
    row = session.scalar(select(RecoveryCode).where(RecoveryCode.staff_user_id == user.id,
                                                    RecoveryCode.code_hash == hash_secret_token(code),
                                                    RecoveryCode.used_at.is_(None)))
    if row is None:
        return False
    row.used_at = utcnow()
    audit.record(session, user.email, "staff.recovery_code_used", user.client_id, None,
                 {"email": user.email, "left": unused_recovery_codes(session, user)})  # flushed: this one is spent
    return True


# --- passkeys (WebAuthn) ---------------------------------------------------------------------------

def _user_handle(user: StaffUser) -> bytes:
    # A stable opaque handle (never the e-mail): the user's row id.
    return f"staff-{user.id}".encode()


def registration_options(user: StaffUser, *, rp_id: str, rp_name: str) -> tuple[str, bytes]:
    """Options for navigator.credentials.create() as JSON, and the challenge to keep for verifying."""
    options = webauthn.generate_registration_options(
        rp_id=rp_id, rp_name=rp_name, user_name=user.email, user_id=_user_handle(user),
        user_display_name=user.email,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in user.passkeys],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED),
    )
    return webauthn.options_to_json(options), options.challenge


def register_passkey(session: Session, user: StaffUser, credential: str, challenge: bytes, *, rp_id: str,
                     origin: str, name: str, actor: str) -> WebAuthnCredential:
    """Verify an attestation and keep the passkey. Audited; the caller commits."""
    try:
        verified = webauthn.verify_registration_response(credential=credential, expected_challenge=challenge,
                                                          expected_rp_id=rp_id, expected_origin=origin)
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SecondFactorError("the passkey could not be registered; try again") from exc
    if session.scalar(select(WebAuthnCredential.id).where(
            WebAuthnCredential.credential_id == verified.credential_id)) is not None:
        raise SecondFactorError("this passkey is registered already")
    row = WebAuthnCredential(staff_user_id=user.id, credential_id=verified.credential_id,
                             public_key=verified.credential_public_key, sign_count=verified.sign_count,
                             name=(name or "Passkey").strip()[:100] or "Passkey")
    session.add(row)
    user.passkeys.append(row)
    audit.record(session, actor, "staff.second_factor_added", user.client_id, None,
                 {"email": user.email, "kind": "passkey", "name": row.name})
    return row


def authentication_options(user: StaffUser, *, rp_id: str) -> tuple[str, bytes]:
    options = webauthn.generate_authentication_options(
        rp_id=rp_id, allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in user.passkeys],
        user_verification=UserVerificationRequirement.PREFERRED)
    return webauthn.options_to_json(options), options.challenge


def verify_passkey(session: Session, user: StaffUser, credential: str, challenge: bytes, *, rp_id: str,
                   origin: str) -> bool:
    """Check an assertion by one of the user's passkeys; keeps the signature counter. The caller commits."""
    try:
        raw_id = webauthn.base64url_to_bytes(json.loads(credential)["rawId"])
    except (ValueError, KeyError, TypeError):
        return False
    row = next((c for c in user.passkeys if c.credential_id == raw_id), None)
    if row is None:
        return False
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=row.public_key, credential_current_sign_count=row.sign_count)
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError):
        return False
    row.sign_count, row.last_used_at = verified.new_sign_count, utcnow()
    return True


def remove_passkey(session: Session, user: StaffUser, passkey_id: int, *, actor: str) -> None:
    row = next((c for c in user.passkeys if c.id == passkey_id), None)
    if row is None:
        raise SecondFactorError("no such passkey")
    user.passkeys.remove(row)
    session.delete(row)
    audit.record(session, actor, "staff.second_factor_removed", user.client_id,
                 {"email": user.email, "kind": "passkey", "name": row.name}, None)


def remove_totp(session: Session, user: StaffUser, *, actor: str) -> None:
    user.totp_secret, user.totp_last_step = None, None
    audit.record(session, actor, "staff.second_factor_removed", user.client_id,
                 {"email": user.email, "kind": "totp"}, None)


def reset_second_factor(session: Session, user: StaffUser, *, actor: str) -> int:
    """An admin's reset for a user who lost every factor: passkeys, TOTP and recovery codes go, every
    session ends, and the user enrols again at the next sign-in. Audited; commits. Returns sessions ended."""
    before = {"email": user.email, "passkeys": len(user.passkeys), "totp": bool(user.totp_secret)}
    for row in list(user.passkeys):
        user.passkeys.remove(row)
        session.delete(row)
    user.totp_secret, user.totp_last_step = None, None
    session.execute(delete(RecoveryCode).where(RecoveryCode.staff_user_id == user.id))
    now, ended = utcnow(), 0
    for row in session.scalars(select(StaffSession).where(StaffSession.staff_user_id == user.id,
                                                          StaffSession.revoked_at.is_(None))):
        row.revoked_at, ended = now, ended + 1
    audit.record(session, actor, "staff.reset_second_factor", user.client_id, before,
                 {"email": user.email, "passkeys": 0, "totp": False, "sessions_ended": ended})
    session.commit()
    return ended
