"""Admin: a client's beacon keys (rotation) and the packages issued with them."""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from app import packages as package_service
from app.admin import actor, bp, client_or_404, clients_changed
from app.admin.forms import PackageForm, PackageKeyRevokeForm, RepublishForm, RotateKeyForm
from app.clients import services as client_service
from app.extensions import db


@bp.post("/clients/<slug>/rotate-key")
def client_rotate_key(slug: str):
    client = client_or_404(slug)
    form = RotateKeyForm()
    if not form.validate_on_submit():
        for error in [*form.grace_hours.errors, *form.confirm.errors]:
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
            package, built = package_service.package_file(
                db.session, client=client, course_title=form.course_title.data,
                scorm_version=None if form.scorm_version.data == "content" else form.scorm_version.data,
                content=content,
                mode=form.mode.data if client.tracked else "deployed",
                server_url=current_app.config["PUBLIC_URL"], issued_by=actor())
        except package_service.PackageError as exc:
            db.session.rollback()
            form.content.errors.append(str(exc))
            return _packages_page(client, form), _refusal_status(exc)
        else:
            download = f"{client.slug}-{built.filename}"
            # The download has no page of its own: the warnings wait for the CSM's next page view.
            for warning in built.warnings:
                flash(f"{download} was built, but check this before you hand it out: {warning}.", "warning")
            return send_file(package, mimetype="application/zip", as_attachment=True, download_name=download)
    return _packages_page(client, form), 400 if form.errors else 200


@bp.app_template_filter("package_format")
def package_format(value: str | None) -> str:
    return package_service.format_name(value)


def _refusal_status(exc: Exception) -> int:
    """400 for content that cannot be packaged; 507 when the server could not store it (not the CSM's fault)."""
    return 507 if isinstance(exc, package_service.StorageError) else 400


def upload_limit_mb() -> int:
    return current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)


def package_list(client) -> dict:
    """What the package list needs: the issues, each one's keys, a revoke form each."""
    packages = client_service.package_issues(db.session, client)
    keys: dict[int, list] = {}
    for key in client_service.client_keys(db.session, client):
        if key.package_issue_id is not None:
            keys.setdefault(key.package_issue_id, []).append(key)
    return {"packages": packages, "package_keys": keys,
            "revoke_forms": {p.id: PackageKeyRevokeForm(prefix=f"r{p.id}", formdata=None) for p in packages}}


def _packages_page(client, form) -> str:
    return render_template("admin/packages.html", client=client, form=form, upload_limit_mb=upload_limit_mb(),
                           **package_list(client))


@bp.get("/clients/<slug>/packages/<uuid:package_id>")
def client_package(slug: str, package_id):
    """One package: its facts, its keys and, for a remote package, the form to republish its course."""
    client = client_or_404(slug)
    issue = _issue_or_404(client, package_id)
    return _package_page(client, issue, RepublishForm())


@bp.post("/clients/<slug>/packages/<uuid:package_id>/republish")
def client_package_republish(slug: str, package_id):
    client = client_or_404(slug)
    issue = _issue_or_404(client, package_id)
    form = RepublishForm()
    if not form.validate_on_submit():
        return _package_page(client, issue, form), 400
    try:
        remote = package_service.republish(db.session, package_id=issue.package_id, content=form.content.data.stream,
                                           actor=actor())
    except package_service.PackageError as exc:
        db.session.rollback()
        form.content.errors.append(f"{exc}. Nothing changed: the LMSs keep showing the current version.")
        return _package_page(client, issue, form), _refusal_status(exc)
    flash(f"The new version of {issue.course_title} is published: every LMS shows it at the learner's next "
          "launch; the package ID and key stay the same.", "success")
    for warning in remote.warnings:
        flash(f"The new version is live, but check this: {warning}.", "warning")
    return redirect(url_for("admin.client_package", slug=client.slug, package_id=issue.package_id))


def _issue_or_404(client, package_id):
    issue = client_service.package_issue(db.session, client, package_id)
    if issue is None:
        abort(404)
    return issue


def _package_page(client, issue, form) -> str:
    keys = [key for key in client_service.client_keys(db.session, client) if key.package_issue_id == issue.id]
    return render_template("admin/package.html", client=client, package=issue, form=form, keys=keys,
                           remote=package_service.remote_content(db.session, issue.package_id),
                           upload_limit_mb=upload_limit_mb())


@bp.post("/clients/<slug>/packages/<uuid:package_id>/revoke-key")
def client_package_revoke(slug: str, package_id):
    client = client_or_404(slug)
    issue = _issue_or_404(client, package_id)
    form = PackageKeyRevokeForm(prefix=f"r{issue.id}")
    if not form.validate_on_submit():
        flash("Key not revoked: tick the box to confirm.", "error")
        return redirect(url_for("admin.client_packages", slug=client.slug))
    try:
        revoked = client_service.revoke_package_key(db.session, client, issue, actor=actor())
    except client_service.ClientError as exc:
        db.session.rollback()
        flash(f"Nothing changed: {exc}.", "error")
    else:
        clients_changed()
        flash(f"Key {', '.join(revoked)} of the {issue.course_title} package revoked; other packages keep "
              "working.", "success")
    return redirect(url_for("admin.client_packages", slug=client.slug))


@bp.errorhandler(RequestEntityTooLarge)
def _upload_too_large(exc):
    """An upload over MAX_UPLOAD_MB: back to the form with the limit, not a bare 413 page."""
    if request.endpoint not in ("admin.client_packages", "admin.client_package_republish"):
        return exc
    args = request.view_args or {}
    client = client_service.find_client(db.session, args.get("slug", ""))
    if client is None:
        abort(404)
    too_large = (f"That file is larger than the {upload_limit_mb()} MB an upload may have; nothing was "
                 "{done}. Remove unused media from the course, or ask an operator to raise MAX_UPLOAD_MB.")
    if request.endpoint == "admin.client_package_republish":
        issue = _issue_or_404(client, args.get("package_id"))
        form = RepublishForm(formdata=None)
        form.content.errors = [too_large.format(done="changed: the LMSs keep showing the current version")]
        return _package_page(client, issue, form), 413
    form = PackageForm(formdata=None)
    form.content.errors = [too_large.format(done="built")]
    return _packages_page(client, form), 413
