"""Admin: beacons held back for a placeholder student ID, and their release (preview, then confirm)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from app.admin import actor, bp, client_or_404
from app.admin.forms import HeldBackReleaseForm
from app.extensions import db
from app.identity.placeholders import policy_entries
from app.ingest import held_back


def _page(client, form: HeldBackReleaseForm, chosen: str | None, status: int = 200):
    figures = held_back.figures(db.session, client.id)
    preview = held_back.figures(db.session, client.id, placeholder=chosen or None) if chosen is not None else None
    return render_template("admin/held_back.html", client=client, figures=figures, chosen=chosen,
                           preview=preview, form=form, policy=policy_entries(client.placeholder_ids)), status


@bp.get("/clients/<slug>/held-back")
def client_held_back(slug: str):
    """Every held-back beacon by placeholder and course; ``?release=PLACEHOLDER`` (or ``?release_all=1``)
    previews a release, with the form that confirms it."""
    client = client_or_404(slug)
    wanted = request.args.get("release")
    chosen = "" if request.args.get("release_all") else (None if wanted is None else wanted[:255])
    form = HeldBackReleaseForm(formdata=None, placeholder=chosen or "")
    return _page(client, form, chosen)


@bp.post("/clients/<slug>/held-back/release")
def client_held_back_release(slug: str):
    client = client_or_404(slug)
    form = HeldBackReleaseForm()
    placeholder = (form.placeholder.data or "") or None
    if not form.validate_on_submit():
        return _page(client, form, placeholder or "", 400)
    done = held_back.release(db.session, current_app.extensions["pseudonymiser"],
                             current_app.extensions["client_directory"], client, actor=actor(),
                             placeholder=placeholder)
    flash(f"{done.beacons} held-back beacon(s) released ({done.launches} launch(es)); they are counted from now on.",
          "success")
    return redirect(url_for("admin.client_held_back", slug=client.slug))
