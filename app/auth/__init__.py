"""Staff login and logout (session cookies) and bearer tokens for the JSON API."""

from __future__ import annotations

import unicodedata
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ..extensions import db, limiter, login_manager
from ..models import StaffUser
from ..services import staff as staff_service

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(session_token: str) -> StaffUser | None:
    user = staff_service.user_for_session(db.session, session_token)
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


def _account_key() -> str:
    """This address and the e-mail as typed, normalised: guesses at one account from one address.

    Keyed by both, so nobody elsewhere can use up an account's attempts and lock its owner out.
    Every attempt counts (not only failures): a check-then-count after the answer would let
    concurrent requests slip past the limit.
    """
    email = (request.form.get("email") or "").strip().casefold()[:255]
    return f"login-account:{get_remote_address()}:{email}"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, methods=["POST"],
               error_message="Too many sign-in attempts from your address. Wait a minute, then try again.")
@limiter.limit(_account_rate_limit, methods=["POST"], key_func=_account_key,
               error_message="Too many sign-in attempts for this e-mail address. Wait a minute, then try again.")
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
            session.clear()  # a fresh session at login: nothing carried over from before
            staff_service.record_successful_login(user)
            token = staff_service.start_session(db.session, user)
            db.session.commit()
            user.session_token = token
            login_user(user)
            return redirect(safe_next(request.args.get("next")) or home_for(user))
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


def token_required(view):
    """JSON API views: a valid bearer token or 401."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        user = bearer_user()
        if user is None:
            response = jsonify({"error": "unauthorized",
                                "message": "send Authorization: Bearer <token> (flask token create)"})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="usage API"'
            return response
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped
