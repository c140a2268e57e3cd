"""Admin: a client's beacon keys (rotation) and the packages issued with them."""

from __future__ import annotations

import datetime as dt
import io

from flask import current_app, flash, redirect, render_template, send_file, url_for

from ..extensions import db
from ..services import clients as client_service
from ..services import packages as package_service
from . import actor, bp, client_or_404, clients_changed
from .forms import PackageForm, RotateKeyForm


@bp.post("/clients/<slug>/rotate-key")
def client_rotate_key(slug: str):
    client = client_or_404(slug)
    form = RotateKeyForm()
    if not form.validate_on_submit():
        for error in form.grace_hours.errors:
            flash(f"Key not rotated: {error}", "error")
        return redirect(url_for("admin.client_detail", slug=client.slug))
    key = client_service.rotate_key(db.session, client, actor=actor(),
                                    grace=dt.timedelta(hours=form.grace_hours.data))
    clients_changed()
    flash(f"New key issued. Keys issued before keep working for {form.grace_hours.data} hour(s).", "success")
    return render_template("admin/key_shown.html", client=client, key=key, new_client=False)


@bp.route("/clients/<slug>/packages", methods=["GET", "POST"])
def client_packages(slug: str):
    client = client_or_404(slug)
    form = PackageForm()
    if form.validate_on_submit():
        upload = form.content.data
        content = upload.stream if upload and getattr(upload, "filename", "") else None
        try:
            data, built = package_service.package_bytes(
                db.session, client=client, course_title=form.course_title.data,
                scorm_version=form.scorm_version.data, content=content,
                mode=form.mode.data if client.tracked else "deployed",
                server_url=current_app.config["PUBLIC_URL"], issued_by=actor())
        except package_service.PackageError as exc:
            db.session.rollback()
            form.content.errors.append(str(exc))
        else:
            return send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True,
                             download_name=f"{client.slug}-{built.filename}")
    return render_template("admin/packages.html", client=client, form=form,
                           packages=client_service.package_issues(db.session, client)), \
        400 if form.errors else 200
