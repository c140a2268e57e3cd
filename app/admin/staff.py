"""Admin: staff users (admins only: see ``_guard``)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from app.admin import actor, bp
from app.admin.forms import (
    PASSWORD_RULE,
    PasswordResetForm,
    SecondFactorResetForm,
    StaffChangeForm,
    StaffForm,
    StaffTokenCreateForm,
    choices,
)
from app.clients import services as client_service
from app.extensions import db
from app.models import Client, StaffUser, utcnow
from app.staff import second_factor as second_factor_service
from app.staff import services as staff_service
from app.staff.auth.tokens import TokenRevokeForm, revoke_confirmed


def _client_choices(all_clients: list[Client]):
    return choices([("", "—")] + [(c.slug, f"{c.name} ({c.slug})") for c in all_clients])


@bp.route("/staff", methods=["GET", "POST"])
def staff():
    all_clients = client_service.all_clients(db.session)
    form = StaffForm()
    form.client.choices = _client_choices(all_clients)
    if form.validate_on_submit():
        client = next((c for c in all_clients if c.slug == form.client.data), None)
        try:
            user = staff_service.create_staff(db.session, email=form.email.data, role=form.role.data,
                                              password=form.password.data, actor=actor(), client=client)
        except staff_service.StaffError as exc:
            db.session.rollback()
            message = str(exc).replace("--client SLUG", "a client")
            target = form.password if "password" in message else form.client if "client" in message else form.email
            target.errors.append(message)
        else:
            flash(f"Staff user {user.email} created.", "success")
            return redirect(url_for("admin.staff"))
    users = staff_service.all_staff(db.session)
    change_forms = {}
    for user in users:
        change = StaffChangeForm(prefix=f"u{user.id}", formdata=None, role=user.role, active=user.active,
                                 client=user.client.slug if user.client else "",
                                 all_client_alerts=user.all_client_alerts)
        change.client.choices = _client_choices(all_clients)
        change_forms[user.id] = change
    return render_template("admin/staff.html", form=form, users=users, change_forms=change_forms,
                           reset_forms={u.id: PasswordResetForm(prefix=f"p{u.id}", formdata=None) for u in users},
                           factor_forms={u.id: SecondFactorResetForm(prefix=f"z{u.id}", formdata=None) for u in users},
                           required_roles=second_factor_service.REQUIRED_ROLES,
                           alert_roles=staff_service.ALERT_ROLES,
                           second_factor_required=current_app.config["STAFF_SECOND_FACTOR"] == "required",
                           password_rule=PASSWORD_RULE, now=utcnow()), 400 if form.errors else 200


@bp.post("/staff/<int:user_id>")
def staff_change(user_id: int):
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = StaffChangeForm(prefix=f"u{user.id}")
    form.client.choices = _client_choices(client_service.all_clients(db.session))
    if not form.validate_on_submit():
        flash("Nothing changed: the form was incomplete.", "error")
        return redirect(url_for("admin.staff"))
    if user.id == current_user.id and (not form.active.data or form.role.data != "admin"):
        flash("You cannot deactivate yourself or drop your own admin role.", "error")
        return redirect(url_for("admin.staff"))
    client = client_service.find_client(db.session, form.client.data) if form.client.data else None
    try:
        staff_service.update_staff(db.session, user, actor=actor(), role=form.role.data, active=form.active.data,
                                   client=client if form.role.data == "client" else None,
                                   unlock=form.unlock.data,
                                   all_client_alerts=(form.all_client_alerts.data
                                                      and form.role.data in staff_service.ALERT_ROLES))
    except staff_service.StaffError as exc:
        db.session.rollback()
        flash(f"Nothing changed for {user.email}: {exc}.", "error")
    else:
        flash(f"Saved {user.email}.", "success")
    return redirect(url_for("admin.staff"))


@bp.post("/staff/<int:user_id>/password")
def staff_reset_password(user_id: int):
    """A new password set by an admin; every session of that user ends."""
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = PasswordResetForm(prefix=f"p{user.id}")
    if not form.validate_on_submit():
        reasons = " ".join(form.password.errors or ["the form was incomplete."])
        flash(f"Password of {user.email} not changed: {reasons}", "error")
        return redirect(url_for("admin.staff"))
    try:
        ended = staff_service.reset_password(db.session, user, form.password.data, actor=actor())
    except staff_service.StaffError as exc:
        db.session.rollback()
        flash(f"Password of {user.email} not changed: {exc}.", "error")
    else:
        flash(f"New password set for {user.email}; {ended} session(s) ended. Tell them in person.", "success")
    return redirect(url_for("admin.staff"))


@bp.post("/staff/<int:user_id>/second-factor")
def staff_reset_second_factor(user_id: int):
    """For a user who lost every factor and their recovery codes; audited, and their sessions end."""
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = SecondFactorResetForm(prefix=f"z{user.id}")
    if not form.validate_on_submit():
        flash(f"Second factor of {user.email} not reset: tick the box to confirm.", "error")
        return redirect(url_for("admin.staff"))
    ended = second_factor_service.reset_second_factor(db.session, user, actor=actor())
    flash(f"Second factor of {user.email} reset; {ended} session(s) ended. They set up a new one at their "
          "next sign-in. Tell them in person.", "success")
    return redirect(url_for("admin.staff"))


def _owner_choices(users: list[StaffUser]):
    return choices([("", "—")] + [
        (str(u.id), f"{u.email} ({u.role}{' of ' + u.client.slug if u.client else ''})") for u in users if u.active])


@bp.route("/staff/tokens", methods=["GET", "POST"])
def staff_tokens():
    """Every API token; an admin makes one for any active staff user (its kind is their role), shown once."""
    users = staff_service.all_staff(db.session)
    form = StaffTokenCreateForm()
    form.owner.choices = _owner_choices(users)
    if form.validate_on_submit():
        owner = next(u for u in users if str(u.id) == form.owner.data)
        try:
            token = staff_service.create_token(db.session, owner, actor=actor(), label=form.label.data,
                                               days=form.days.data)
        except staff_service.StaffError as exc:
            db.session.rollback()
            form.owner.errors.append(f"{exc}.")
        else:
            row = staff_service.token_by_prefix(db.session, token[:staff_service.TOKEN_PREFIX_LENGTH])
            return render_template("admin/token_shown.html", token=token, owner=owner, row=row,
                                   back=url_for("admin.staff_tokens"))
    tokens = staff_service.all_tokens(db.session)
    return render_template("admin/tokens.html", tokens=tokens, now=utcnow(), form=form,
                           revoke_forms={t.id: TokenRevokeForm(prefix=f"t{t.id}", formdata=None) for t in tokens}
                           ), 400 if form.errors else 200


@bp.post("/staff/tokens/<int:token_id>/revoke")
def staff_token_revoke(token_id: int):
    token = staff_service.find_token(db.session, token_id)
    if token is None:
        abort(404)
    return revoke_confirmed(token, actor=actor(), back=url_for("admin.staff_tokens"),
                            done=f"Token {token.token_prefix or '(old token)'} of {token.staff_user.email} revoked.")
