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
import threading
import uuid
import zipfile
from collections import OrderedDict
from io import BytesIO

from flask import Blueprint, Response, abort, request
from sqlalchemy import select

from .extensions import db
from .models import Client, PackageIssue, RemoteContent
from .services import packages

bp = Blueprint("remote", __name__, url_prefix=packages.REMOTE_PREFIX)


def _framing_policy(client: Client) -> str:
    ancestors = " ".join(client.allowed_origins or []) or "https:"
    return (f"frame-ancestors {ancestors}; script-src 'self'; object-src 'none'; base-uri 'self'; "
            "form-action 'self'")


class _ZipCache:
    """Recently served contents per process, by (package, updated_at): a republish is a new key."""

    def __init__(self, budget: int) -> None:
        self.budget, self.items, self.lock = budget, OrderedDict(), threading.Lock()

    def get(self, key, load) -> bytes:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        data = load()
        with self.lock:
            self.items[key] = data
            for old in [k for k in self.items if k[0] == key[0] and k != key]:
                del self.items[old]
            while sum(len(v) for v in self.items.values()) > self.budget and len(self.items) > 1:
                self.items.popitem(last=False)
        return data


_cache = _ZipCache(256 * 1024**2)


@bp.get("/<uuid:package_id>/<path:path>")
def content(package_id: uuid.UUID, path: str):
    row = db.session.execute(
        select(RemoteContent.id, RemoteContent.launch_file, RemoteContent.beacon_key, RemoteContent.updated_at,
               PackageIssue, Client)
        .join(PackageIssue, PackageIssue.package_id == RemoteContent.package_id)
        .join(Client, Client.id == PackageIssue.client_id)
        .where(RemoteContent.package_id == package_id)
    ).one_or_none()
    if row is None:
        abort(404)
    content_id, launch_file, beacon_key, updated_at, issue, client = row
    if not client.active or not client.tracked:
        abort(404)
    try:
        name = packages.safe_member_name(path)
    except packages.PackageError:
        abort(404)

    if name == packages.TRACKER_FILE:
        body = packages.configured_tracker(beacon_url=packages.BEACON_PATH, key=beacon_key,
                                           course=issue.course_title, package_id=package_id,
                                           scorm_version=issue.scorm_version)
    elif name == packages.REMOTE_API_FILE:
        body = packages.remote_api_source()
    else:
        data = _cache.get((package_id, updated_at), lambda: db.session.scalar(
            select(RemoteContent.content).where(RemoteContent.id == content_id)))
        with zipfile.ZipFile(BytesIO(data)) as archive:
            try:
                body = archive.read(name)
            except KeyError:
                abort(404)
        if name == launch_file:
            body = packages.inject_tracker(body, name, (packages.REMOTE_API_FILE, packages.TRACKER_FILE))

    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(body, mimetype=mimetype)
    # Republished content shows at the next launch: caches must ask again (and get 304 when unchanged).
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = _framing_policy(client)
    response.add_etag()
    return response.make_conditional(request)
