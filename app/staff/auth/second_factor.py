"""The second step of sign-in and each user's sign-in security page (passkeys, TOTP, recovery codes).

Routes live on the auth blueprint. The security page serves a signed-in user, and a user who gave a
correct password but must enrol a second factor before any session is made for them.
"""

from __future__ import annotations

import base64
import json

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired, Length

from app.extensions import db, limiter
from app.models import StaffUser
from app.staff import second_factor as sf
from app.staff import services as staff_service
from app.staff.auth import bp, finish_sign_in, pending_user


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(message="Type the code."), Length(max=64)])


class ConfirmForm(FlaskForm):
    """A bare form: its CSRF token is all a button needs."""


def _second_step_limit() -> str:
    return current_app.config["LOGIN_SECOND_FACTOR_RATE_LIMIT"]


def _second_step_key() -> str:
    # Per account: the password is right by now, so only its owner (or a thief of it) is here.
    return f"login-second-factor:{session.get('pending_user')}"


def _rp() -> tuple[str, str]:
    config = current_app.config
    public = config["PUBLIC_URL"]
    scheme, _, rest = public.partition("://")
    return config["WEBAUTHN_RP_ID"], f"{scheme}://{rest.split('/', 1)[0]}"


def _json_error(message: str, status: int = 400):
    response = jsonify({"error": "second_factor", "message": message})
    response.status_code = status
    return response


def _keep_challenge(challenge: bytes) -> None:
    session["webauthn_challenge"] = base64.urlsafe_b64encode(challenge).decode()


def _take_challenge() -> bytes | None:
    value = session.pop("webauthn_challenge", None)
    return base64.urlsafe_b64decode(value) if value else None


# --- the second step -------------------------------------------------------------------------------

@bp.route("/login/verify", methods=["GET", "POST"])
@limiter.limit(_second_step_limit, methods=["POST"], key_func=_second_step_key,
               error_message="Too many codes tried. Wait a few minutes, then sign in again.")
def second_factor():
    user = pending_user(enrol=False)
    if user is None:
        flash("Sign in again: the first step ran out of time.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        code = form.code.data
        if sf.verify_totp(user, code):
            return redirect(finish_sign_in(user, session.get("pending_next")))
        if sf.use_recovery_code(db.session, user, code):
            left = sf.unused_recovery_codes(db.session, user)
            target = finish_sign_in(user, session.get("pending_next"))
            flash(f"Recovery code used; {left} left. If you lost your passkey or app, add a new one and make "
                  "new codes on Sign-in security.", "warning")
            return redirect(url_for("auth.security") if left < 3 else target)
        db.session.rollback()
        form.code.errors.append("That code does not match. Type the current code, or a recovery code.")
    if request.method == "POST":
        status = 400
    return render_template("auth/second_factor.html", form=form, user=user,
                           has_totp=bool(user.totp_secret), has_passkey=bool(user.passkeys)), status


@bp.post("/login/passkey/options")
@limiter.limit(_second_step_limit, key_func=_second_step_key)
def passkey_login_options():
    user = pending_user(enrol=False)
    if user is None or not user.passkeys:
        return _json_error("Sign in again: the first step ran out of time.", 401)
    rp_id, _origin = _rp()
    options, challenge = sf.authentication_options(user, rp_id=rp_id)
    _keep_challenge(challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/login/passkey")
@limiter.limit(_second_step_limit, key_func=_second_step_key)
def passkey_login():
    user = pending_user(enrol=False)
    challenge = _take_challenge()
    if user is None or challenge is None:
        return _json_error("Sign in again: the first step ran out of time.", 401)
    rp_id, origin = _rp()
    body = request.get_json(silent=True) or {}
    if not sf.verify_passkey(db.session, user, json.dumps(body.get("credential")), challenge, rp_id=rp_id,
                             origin=origin):
        db.session.rollback()
        return _json_error("That passkey was not accepted. Try again, or use a code.")
    return jsonify({"redirect": finish_sign_in(user, session.get("pending_next"))})


# --- the security page: enrolling and managing factors --------------------------------------------

def _security_user() -> StaffUser | None:
    """The signed-in user, or one who must enrol a second factor to finish signing in."""
    if current_user.is_authenticated:
        return current_user
    return pending_user(enrol=True)


def _enrolled(user: StaffUser) -> str:
    """After a factor was added: a user finishing sign-in is signed in, and gets recovery codes if none."""
    need_codes = sf.unused_recovery_codes(db.session, user) == 0
    codes = sf.new_recovery_codes(db.session, user, actor=user.email) if need_codes else None
    db.session.commit()
    if not current_user.is_authenticated:
        finish_sign_in(user, session.get("pending_next"))
    if codes:
        session["new_recovery_codes"] = codes
    return url_for("auth.security")


@bp.get("/account/security")
def security():
    user = _security_user()
    if user is None:
        return redirect(url_for("auth.login"))
    secret = session.get("totp_setup_secret")
    if not user.totp_secret and not secret:
        secret = session["totp_setup_secret"] = sf.new_totp_secret()
    return render_template(
        "auth/security.html", user=user, signed_in=current_user.is_authenticated,
        required=sf.must_enrol(user, current_app.config["STAFF_SECOND_FACTOR"]) or (
            current_app.config["STAFF_SECOND_FACTOR"] == "required" and user.role in sf.REQUIRED_ROLES),
        totp_secret=None if user.totp_secret else secret,
        totp_uri=None if user.totp_secret else sf.totp_uri(secret, user.email),
        new_codes=session.pop("new_recovery_codes", None),
        codes_left=sf.unused_recovery_codes(db.session, user),
        code_form=CodeForm(formdata=None), confirm_form=ConfirmForm(formdata=None),
        passkeys_possible=not _rp()[0].replace(".", "").isdigit(),
        alerts_form=_alerts_form(user) if current_user.is_authenticated else None,
    )


class AlertOptInForm(FlaskForm):
    """One's own "e-mail me every client's alerts" (the account page; admins and CSMs)."""
    all_client_alerts = BooleanField("E-mail me every client's alerts")


def _alerts_form(user: StaffUser):
    """The "e-mail me every client's alerts" opt-in: for the roles alerts go to (admins, CSMs)."""
    if user.role not in staff_service.ALERT_ROLES:
        return None
    return AlertOptInForm(formdata=None, all_client_alerts=user.all_client_alerts)


@bp.post("/account/alerts")
def account_alerts():
    """One's own opt-in to every client's alert e-mails (audited as a staff change)."""
    if not current_user.is_authenticated:
        abort(401)
    form = AlertOptInForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired or did not come from this site; nothing was changed.")
    if current_user.role not in staff_service.ALERT_ROLES:
        abort(403, description="Alert e-mails go to admins and CSMs only.")
    staff_service.update_staff(db.session, current_user, actor=current_user.email,
                               all_client_alerts=form.all_client_alerts.data)
    flash("You now receive every client's alert e-mails." if form.all_client_alerts.data else
          "You now receive alert e-mails only for the clients you are the CSM of.", "success")
    return redirect(url_for("auth.security"))


@bp.post("/account/security/totp")
def security_totp():
    user = _security_user()
    if user is None:
        return redirect(url_for("auth.login"))
    form = CodeForm()
    secret = session.get("totp_setup_secret")
    if not form.validate_on_submit() or not secret:
        flash("Type the code the app shows.", "error")
        return redirect(url_for("auth.security"))
    try:
        sf.enrol_totp(db.session, user, secret, form.code.data, actor=user.email)
    except sf.SecondFactorError as exc:
        db.session.rollback()
        flash(f"Authenticator app not set up: {exc}.", "error")
        return redirect(url_for("auth.security"))
    session.pop("totp_setup_secret", None)
    target = _enrolled(user)
    flash("Authenticator app set up: sign-ins now ask for its code.", "success")
    return redirect(target)


@bp.post("/account/security/passkey/options")
def security_passkey_options():
    user = _security_user()
    if user is None:
        return _json_error("Sign in again.", 401)
    rp_id, _origin = _rp()
    options, challenge = sf.registration_options(user, rp_id=rp_id, rp_name=current_app.config["WEBAUTHN_RP_NAME"])
    _keep_challenge(challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/account/security/passkey")
def security_passkey():
    user = _security_user()
    challenge = _take_challenge()
    if user is None or challenge is None:
        return _json_error("Sign in again.", 401)
    rp_id, origin = _rp()
    body = request.get_json(silent=True) or {}
    try:
        sf.register_passkey(db.session, user, json.dumps(body.get("credential")), challenge, rp_id=rp_id,
                            origin=origin, name=str(body.get("name") or "Passkey"), actor=user.email)
    except sf.SecondFactorError as exc:
        db.session.rollback()
        return _json_error(f"{exc}.".capitalize())
    target = _enrolled(user)
    flash("Passkey added: sign-ins now ask for it.", "success")
    return jsonify({"redirect": target})


def _signed_in_form() -> StaffUser:
    if not current_user.is_authenticated:
        abort(401)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    return current_user


def _keeps_a_factor(user: StaffUser) -> bool:
    if sf.must_enrol(user, current_app.config["STAFF_SECOND_FACTOR"]):
        db.session.rollback()
        flash("Not removed: your role needs a second factor. Add another one first.", "error")
        return False
    return True


@bp.post("/account/security/passkey/<int:passkey_id>/remove")
def security_passkey_remove(passkey_id: int):
    user = _signed_in_form()
    try:
        sf.remove_passkey(db.session, user, passkey_id, actor=user.email)
    except sf.SecondFactorError:
        abort(404)
    if _keeps_a_factor(user):
        db.session.commit()
        flash("Passkey removed.", "success")
    return redirect(url_for("auth.security"))


@bp.post("/account/security/totp/remove")
def security_totp_remove():
    user = _signed_in_form()
    sf.remove_totp(db.session, user, actor=user.email)
    if _keeps_a_factor(user):
        db.session.commit()
        flash("Authenticator app removed.", "success")
    return redirect(url_for("auth.security"))


@bp.post("/account/security/recovery-codes")
def security_recovery_codes():
    user = _signed_in_form()
    if not sf.has_second_factor(user):
        flash("Add a passkey or an authenticator app first.", "error")
        return redirect(url_for("auth.security"))
    session["new_recovery_codes"] = sf.new_recovery_codes(db.session, user, actor=user.email)
    db.session.commit()
    return redirect(url_for("auth.security"))
