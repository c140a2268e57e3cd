"""/account/tokens: every signed-in user's own API tokens (make one, shown once; list; revoke).

A token acts with its owner's role and client, so making one for oneself grants nothing new: a
``client`` user's token reads only that client's usage. Admins make tokens for others on
/admin/staff/tokens. Both go through ``staff.services`` (audited).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from app.extensions import db
from app.models import utcnow
from app.staff import services as staff_service
from app.staff.auth import bp
from app.staff.services import MAX_TOKEN_DAYS, TOKEN_DAYS, TOKEN_LABEL_LENGTH


class TokenCreateForm(FlaskForm):
    """A named API token for oneself (the account page); it carries the owner's role and client."""
    label = StringField("Name", validators=[DataRequired(message="Give the token a name, e.g. invoicing script."),
                                            Length(max=TOKEN_LABEL_LENGTH)],
                        filters=[lambda v: v.strip() if isinstance(v, str) else v])
    days = IntegerField("Days until it expires", default=TOKEN_DAYS,
                        validators=[InputRequired(message=f"Give a number of days from 1 to {MAX_TOKEN_DAYS}."),
                                    NumberRange(min=1, max=MAX_TOKEN_DAYS,
                                                message=f"A token lasts 1 to {MAX_TOKEN_DAYS} days.")])


class TokenRevokeForm(FlaskForm):
    confirm = BooleanField("Yes, revoke it: scripts using this token stop at once",
                           validators=[DataRequired(message="Tick the box to confirm.")])


def _no_store(body, status: int = 200):
    return body, status, {"Cache-Control": "no-store"}


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    form = TokenCreateForm()
    if form.validate_on_submit():
        try:
            token = staff_service.create_token(db.session, current_user, actor=current_user.email,
                                               label=form.label.data, days=form.days.data)
        except staff_service.StaffError as exc:
            db.session.rollback()
            form.label.errors.append(f"{exc}.")
        else:
            row = staff_service.token_by_prefix(db.session, token[:staff_service.TOKEN_PREFIX_LENGTH])
            return _no_store(render_template("admin/token_shown.html", token=token, owner=current_user, row=row,
                                             back=url_for("auth.tokens")))
    rows = staff_service.all_tokens(db.session, owner=current_user)
    return _no_store(render_template("auth/tokens.html", tokens=rows, form=form, now=utcnow(),
                                     revoke_forms={t.id: TokenRevokeForm(prefix=f"t{t.id}", formdata=None)
                                                   for t in rows}), 400 if form.errors else 200)


def revoke_confirmed(row, *, actor: str, back: str, done: str):
    """Revoke ``row`` when its own revoke form is confirmed (CSRF, the tick box), flash what
    happened and go ``back``: the one revoke step of the own-tokens page and the admin's."""
    form = TokenRevokeForm(prefix=f"t{row.id}")
    if not form.validate_on_submit():
        flash("Token not revoked: tick the box to confirm.", "error")
        return redirect(back)
    try:
        staff_service.revoke_token(db.session, row, actor=actor)
    except staff_service.StaffError as exc:
        db.session.rollback()
        flash(f"Nothing changed: {exc}.", "error")
    else:
        flash(done, "success")
    return redirect(back)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def token_revoke(token_id: int):
    row = staff_service.find_token(db.session, token_id)
    if row is None or row.staff_user_id != current_user.id:
        abort(404)
    return revoke_confirmed(row, actor=current_user.email, back=url_for("auth.tokens"),
                            done=f"Token {row.label or row.token_prefix} revoked.")
