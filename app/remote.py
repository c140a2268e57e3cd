"""Serving remote packages' content: ``GET /remote/<package_id>/<path>``.

The content comes from ``RemoteContent`` (the database, so any app server
answers). The launch page gets two scripts, both served from here: the course
side of the SCORM relay (``scorm-remote-api.js``) and the tracker configured
like a deployed package's, so launches and completions are counted as usual.
Pages may be framed by the client's LMS origins (any https: origin when none
are configured) and by nothing else.
"""

from __future__ import annotations

import mimetypes
import uuid
import zipfile
from io import BytesIO

from flask import Blueprint, Response, abort
from sqlalchemy import select

from .extensions import db
from .models import Client, PackageIssue, RemoteContent
from .services import packages

bp = Blueprint("remote", __name__, url_prefix=packages.REMOTE_PREFIX)


def _framing_policy(client: Client) -> str:
    ancestors = " ".join(client.allowed_origins or []) or "https:"
    return (f"frame-ancestors {ancestors}; script-src 'self'; object-src 'none'; base-uri 'self'; "
            "form-action 'self'")


@bp.get("/<uuid:package_id>/<path:path>")
def content(package_id: uuid.UUID, path: str):
    row = db.session.execute(
        select(RemoteContent, PackageIssue, Client)
        .join(PackageIssue, PackageIssue.package_id == RemoteContent.package_id)
        .join(Client, Client.id == PackageIssue.client_id)
        .where(RemoteContent.package_id == package_id)
    ).one_or_none()
    if row is None:
        abort(404)
    remote, issue, client = row
    if not client.active or not client.tracked:
        abort(404)
    try:
        name = packages.safe_member_name(path)
    except packages.PackageError:
        abort(404)

    if name == packages.TRACKER_FILE:
        body = packages.configured_tracker(beacon_url=packages.BEACON_PATH, key=remote.beacon_key,
                                           course=issue.course_title, package_id=package_id,
                                           scorm_version=issue.scorm_version)
    elif name == packages.REMOTE_API_FILE:
        body = packages.remote_api_source()
    else:
        with zipfile.ZipFile(BytesIO(remote.content)) as archive:
            try:
                body = archive.read(name)
            except KeyError:
                abort(404)
        if name == remote.launch_file:
            body = packages.inject_tracker(body, name, (packages.REMOTE_API_FILE, packages.TRACKER_FILE))

    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(body, mimetype=mimetype)
    # Republished content shows at the next launch: caches must ask again.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = _framing_policy(client)
    return response
