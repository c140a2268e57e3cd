"""Admin: a client's learner identities: ID-scheme drift, proposed pairs with a preview of
their effect on billing, merge one or all, and the merges made (with undo).

Registered on the admin blueprint (its guard covers it: admins and CSMs). Only
references are shown: student IDs for verbatim clients, pseudonyms' short forms
for anonymised ones; names never appear (they are digests for anonymised clients).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField
from wtforms.validators import DataRequired

from app.admin import actor, bp, client_or_404
from app.billing import drift
from app.extensions import db
from app.learners import merges
from app.models import utcnow


class MergeOneForm(FlaskForm):
    pair = HiddenField(validators=[DataRequired()])


class MergeAllForm(FlaskForm):
    confirm = BooleanField("I have reviewed the pairs and the effect on billing above",
                           validators=[DataRequired("Tick the box to confirm.")])


class UnmergeForm(FlaskForm):
    """A button: only the CSRF token."""


def _page(slug: str, *, all_form: MergeAllForm | None = None, status: int = 200):
    client = client_or_404(slug)
    now = utcnow()
    found = drift.proposals(db.session, client, now)
    effect = drift.preview(db.session, client, [p.key for p in found], now.date(), now) if found else []
    client = client_or_404(slug)  # the preview rolled its merges back
    return render_template(
        "admin/identities.html", client=client, proposals=found, effect=effect,
        drifts=drift.open_drifts(db.session, client), history=merges.merge_history(db.session, client),
        one_form=MergeOneForm(formdata=None), all_form=all_form or MergeAllForm(formdata=None),
        unmerge_form=UnmergeForm(formdata=None), min_pairs=drift.MIN_PAIRS, window_days=drift.WINDOW_DAYS,
    ), status


@bp.get("/clients/<slug>/identities")
def client_identities(slug: str):
    return _page(slug)


@bp.post("/clients/<slug>/identities/merge")
def client_identities_merge(slug: str):
    client = client_or_404(slug)
    merge_all = request.form.get("scope") == "all"
    form = MergeAllForm() if merge_all else MergeOneForm()
    if not form.validate_on_submit():
        return _page(slug, all_form=form if merge_all else None, status=400)
    try:
        done = drift.accept(db.session, client, None if merge_all else [form.pair.data], actor=actor())
    except (drift.ProposalGone, merges.MergeError) as exc:
        db.session.rollback()
        flash(f"Nothing merged: {exc}.", "error")
        return _page(slug, status=409)
    flash(f"Merged {len(done)} pair(s): each now counts as one learner in every period.", "success")
    return redirect(url_for("admin.client_identities", slug=client.slug))


@bp.post("/clients/<slug>/identities/merges/<int:merge_id>/undo")
def client_identities_unmerge(slug: str, merge_id: int):
    client = client_or_404(slug)
    record = merges.find_merge(db.session, client, merge_id)
    if record is None:
        abort(404)
    if not UnmergeForm().validate_on_submit():
        return _page(slug, status=400)
    try:
        merges.unmerge(db.session, client, record.learner, actor=actor())
    except merges.MergeError as exc:
        db.session.rollback()
        flash(f"Nothing undone: {exc}.", "error")
        return _page(slug, status=409)
    flash("Merge undone: the two identities count as two learners again.", "success")
    return redirect(url_for("admin.client_identities", slug=client.slug))
