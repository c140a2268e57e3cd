"""Staff sign-in (password, then a second factor), logout, sessions and bearer tokens for the JSON API.

Sign-in is two steps. The first is the contract's form (``email``, ``password``, ``csrf_token``); a
user with a second factor is then asked for it (a passkey, a TOTP code or a recovery code) before any
session exists, and an ``admin`` or ``csm`` without one, when ``STAFF_SECOND_FACTOR=required``, must
enrol one first (app/staff/auth/second_factor.py). Between the two steps the signed session cookie holds
only the user's id and when the password was checked.
"""

from __future__ import annotations

import datetime as dt
import time
import unicodedata
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeTimedSerializer
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from app.extensions import db, limiter, login_manager
from app.models import StaffUser
from app.staff import second_factor as second_factor_service
from app.staff import services as staff_service

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(session_token: str) -> StaffUser | None:
    config = current_app.config
    user = staff_service.user_for_session(db.session, session_token,
                                          idle=dt.timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
                                          absolute=dt.timedelta(seconds=config["PERMANENT_SESSION_LIFETIME"]))
    if user is not None:
        user.session_token = session_token
    return user


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: never another host, scheme or a protocol-relative URL."""
    if not target or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in target):
        return None  # CR/LF would split the Location header; other controls have no place in a path
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def home_for(user: StaffUser) -> str:
    """Where each role's work starts: CSMs and admins at the clients, billing at
    the overview, client users at their own organisation's usage."""
    if user.role == "client" and user.client is not None:
        return url_for("billing_pages.client_usage", slug=user.client.slug)
    if user.role in ("admin", "csm"):
        return url_for("admin.clients")
    return url_for("billing_pages.overview")


def _login_rate_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_rate_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _any_address_rate_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_ANY_ADDRESS_RATE_LIMIT"]


def _typed_email() -> str:
    return (request.form.get("email") or "").strip().casefold()[:255]


def _account_any_address_key() -> str:
    """Guesses at one account from every address together (30 addresses are held like one)."""
    return f"login-account-any:{_typed_email()}"


# --- known devices: a browser that completed a sign-in to an account ------------------------------

KNOWN_DEVICE_COOKIE = "known_device"


def _device_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="known-device")


def _known_device_for_typed_email() -> bool:
    """This browser signed in to the typed account before: it is spared the any-address throttle,
    so outsiders guessing that account from many addresses cannot lock its owner out."""
    cookie = request.cookies.get(KNOWN_DEVICE_COOKIE)
    if not cookie:
        return False
    try:
        email = _device_serializer().loads(cookie, max_age=current_app.config["KNOWN_DEVICE_DAYS"] * 86400)
    except BadSignature:
        return False
    return bool(email) and email == _typed_email()


def _remember_device(response: Response, user: StaffUser) -> Response:
    response.set_cookie(KNOWN_DEVICE_COOKIE, _device_serializer().dumps(user.email),
                        max_age=current_app.config["KNOWN_DEVICE_DAYS"] * 86400, secure=True, httponly=True,
                        samesite="Lax", path="/login")
    return response


def _account_key() -> str:
    """This address and the e-mail as typed, normalised: guesses at one account from one address.

    Keyed by both, so nobody elsewhere can use up an account's attempts and lock its owner out.
    Every attempt counts (not only failures): a check-then-count after the answer would let
    concurrent requests slip past the limit.
    """
    return f"login-account:{get_remote_address()}:{_typed_email()}"


# --- the step between password and second factor -------------------------------------------------

PENDING_SECONDS = 300  # from a correct password to the second factor


def _begin_second_step(user: StaffUser, next_url: str | None, enrol: bool) -> None:
    session.clear()
    session["pending_user"] = user.id
    session["pending_at"] = int(time.time())
    session["pending_enrol"] = enrol
    if next_url:
        session["pending_next"] = next_url


def pending_user(enrol: bool | None = None) -> StaffUser | None:
    """The user who gave a correct password in the last few minutes and owes a second factor."""
    user_id, at = session.get("pending_user"), session.get("pending_at")
    if user_id is None or at is None or time.time() - at > PENDING_SECONDS:
        return None
    if enrol is not None and bool(session.get("pending_enrol")) != enrol:
        return None
    user = db.session.get(StaffUser, user_id)
    if user is None or not user.active or staff_service.locked_until(user) is not None:
        return None
    return user


def finish_sign_in(user: StaffUser, next_url: str | None = None) -> str:
    """Start the login session (after every required factor); returns where to go. Commits."""
    session.clear()  # a fresh session at login: nothing carried over from before
    staff_service.record_successful_login(user)
    token = staff_service.start_session(db.session, user)
    db.session.commit()
    user.session_token = token
    login_user(user)
    g.remember_device = user
    return safe_next(next_url) or home_for(user)


@bp.after_request  # every sign-in ends on this blueprint; the beacon path never runs it
def _set_known_device(response: Response) -> Response:
    user = g.pop("remember_device", None)
    return _remember_device(response, user) if user is not None else response


def _pending_next() -> str | None:
    return session.get("pending_next")

@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, methods=["POST"],
               error_message="Too many sign-in attempts from your address. Wait a minute, then try again.")
@limiter.limit(_account_rate_limit, methods=["POST"], key_func=_account_key,
               error_message="Too many sign-in attempts for this e-mail address. Wait a minute, then try again.")
@limiter.limit(_any_address_rate_limit, methods=["POST"], key_func=_account_any_address_key,
               exempt_when=_known_device_for_typed_email,
               error_message="Too many sign-in attempts for this account from many places. Wait, then try "
                             "again from a browser that signed in to it before, or ask an admin.")
def login():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = staff_service.find_staff(db.session, form.email.data)
        # An account an admin locked answers like an unknown one: the page never tells which e-mails exist.
        if user is not None and (not user.active or staff_service.locked_until(user) is not None):
            user = None
        if staff_service.check_password(db.session, user, form.password.data):
            db.session.commit()  # a rehashed password
            next_url = safe_next(request.args.get("next"))
            if second_factor_service.has_second_factor(user):
                _begin_second_step(user, next_url, enrol=False)
                return redirect(url_for("auth.second_factor"))
            if second_factor_service.must_enrol(user, current_app.config["STAFF_SECOND_FACTOR"]):
                _begin_second_step(user, next_url, enrol=True)
                flash("Set up a second factor to finish signing in: your account holds other "
                      "organisations' personal data.", "info")
                return redirect(url_for("auth.security"))
            return redirect(finish_sign_in(user, next_url))
        db.session.rollback()
        flash("That e-mail and password do not match an active account.", "error")
    if request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    staff_service.end_session(db.session, current_user.session_token)
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def bearer_user() -> StaffUser | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return staff_service.user_for_token(db.session, token.strip())


def token_refused() -> Response:
    """The 401 for a missing, bad, expired or revoked bearer token."""
    response = jsonify({"error": "unauthorized",
                        "message": "send Authorization: Bearer <token> "
                                   "(make one on the API tokens page, /account/tokens)"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="usage API"'
    return response


def token_required(view):
    """JSON API views: a valid bearer token or 401."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        user = bearer_user()
        if user is None:
            return token_refused()
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped
