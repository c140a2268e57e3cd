"""The content face: remote packages' course files, answered only on the content origin.

The same app may answer two host names: ``PUBLIC_URL``'s (pages and APIs) and
``CONTENT_URL``'s (content only); each answers 404 for the other's addresses, and
no response on the content origin sets a cookie, so a course (whatever its scripts
do) runs with no session and cannot act for a signed-in staff member. A separate
deployment may serve ``CONTENT_URL`` alone, against the same database and store, with the
same ``SECRET_KEY`` (it signs the seat grants the app's beacon path reads).

Addresses (on the content origin):

- ``/<package>/launch/<n>``: the n-th SCO of the current version; a redirect to
  that version's player page for it (``scorm-player.html?sco=<n>``: the SCORM API and
  the tracker, framing the SCO's launch page; see ``packages/remote.py``),
  never cached, so a republish shows at the next launch;
- for a remote cmi5 package, ``/<package>/launch/<n>`` is the n-th AU's ``url`` in its
  ``cmi5.xml``: the LMS opens it with its launch parameters (``actor`` among them), passed on
  in the redirect to the current version's AU page, which is served with the tracker added
  (xAPI mode); no player. While the licence blocks new learners, the seat check is made there
  with the learner the ``actor`` names (a grant, or the licence-limit page);
- ``POST /<package>/seat`` (``{"student_id": ...}`` as text/plain JSON, from one of the
  client's LMS origins only: 403 otherwise): the launcher's question before it opens the course,
  ``{"allowed": true|false}``; false only when the client's licence term blocks new learners at
  its limit (or after expiry) and this learner has not taken a seat yet. While the licence blocks
  new learners, an allowed answer carries a seat ``grant`` (``licensing/seat_grants.py``), and under
  the limit the answer is the same for everyone. Nothing is recorded; the ID travels in the body,
  never in an address, so no access log holds it;
- ``/<package>/limit``: the polite "licence limit reached" page the launcher frames then;
- ``/<package>/<version>/<path>``: a file of a version, with Range and conditional
  requests (a video seeks, a browser revalidates by ETag); ``scorm-player.html``,
  ``scorm-remote-api.js`` and ``scorm-usage-tracker.js`` at a version's root are the
  player, the relay's course side and the tracker configured for the package;
- ``/<package>/g/<grant>/launch/<n>`` and ``/<package>/g/<grant>/<version>/<path>``: the same
  under a seat grant, the only way a client whose licence blocks new learners is served (the
  addresses without one answer 403 with a page saying to open the course from the LMS); the
  tracker served there sends the grant with its beacons.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import mimetypes
import re
import uuid

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request, send_file
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from app import packages
from app.clients.services import snapshot
from app.content.policy import content_security_policy
from app.content.store import DirectoryStore
from app.extensions import csrf, db, limiter
from app.identity.student_ids import InvalidIdentity, check_sealing, normalise_student_id
from app.ingest.beacon import beacon_rate_limit
from app.licensing import licences, seat_grants
from app.licensing.seat_grants import SeatGrants
from app.models import Client, PackageIssue, RemoteContent

bp = Blueprint("content", __name__)
log = logging.getLogger(__name__)

GRANT_REQUIRED_TEMPLATE = "content/grant_required.html"

# Course files are immutable per version (their ETag is their SHA-256); pages revalidate
# so a change of the client's allowed LMS origins (frame-ancestors) applies at once.
_FILE_MAX_AGE = 86400


def _package(package_id: uuid.UUID):
    row = db.session.execute(
        select(RemoteContent, PackageIssue, Client)
        .join(PackageIssue, PackageIssue.package_id == RemoteContent.package_id)
        .join(Client, Client.id == PackageIssue.client_id)
        .where(RemoteContent.package_id == package_id)
    ).one_or_none()
    if row is None or not row[2].active or not row[2].tracked:
        abort(404)
    return row


def _store():
    return current_app.extensions["content_store"]


def _secured(response: Response, client: Client, issue: PackageIssue | None = None) -> Response:
    """The content origin's CSP; a cmi5 AU (``issue`` of a cmi5 package) also reaches the LMS's LRS."""
    response.headers["Content-Security-Policy"] = content_security_policy(
        client.allowed_origins or [], current_app.config["PUBLIC_URL"],
        lrs=issue is not None and issue.scorm_version == "cmi5")
    return response


def _grants() -> SeatGrants:
    return current_app.extensions["seat_grants"]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _blocks_new_learners(client: Client) -> bool:
    """Cached like the beacon path's clients: every file of a course asks."""
    today = _today()
    return current_app.extensions["client_directory"].remembered(
        ("blocks_new_learners", client.id, today), lambda: licences.blocks_new_learners(db.session, client.id, today))


def _grant_required(client: Client, status: int = 403) -> Response:
    """A client whose licence blocks new learners: its course opens only from the launcher, with a grant."""
    response = Response(render_template(GRANT_REQUIRED_TEMPLATE, client_name=client.name), status=status)
    response.headers["Cache-Control"] = "no-store"
    return _secured(response, client)


@bp.get("/<uuid:package_id>/launch/<int:sco>")
def launch(package_id: uuid.UUID, sco: int):
    remote, issue, client = _package(package_id)
    if issue.scorm_version == "cmi5":
        return _launch_au(package_id, remote, issue, client, sco)
    if _blocks_new_learners(client):
        return _grant_required(client)
    return _launch(package_id, remote.content_version, sco, client, prefix="")


def _launch_au(package_id: uuid.UUID, remote: RemoteContent, issue: PackageIssue, client: Client,
               sco: int) -> Response:
    """A remote cmi5 package's AU, as the LMS launches it (its url in cmi5.xml): a redirect to the
    current version's AU page with the LMS's launch parameters (endpoint, fetch, actor, registration,
    activityId) passed on as they came. They are read here only for a licence that blocks new
    learners, where the learner named by ``actor`` gets a seat grant (the seat check's rules) or the
    licence-limit page. Neither the access log (path only, see gunicorn.conf.py) nor anything
    stored holds them.
    """
    version, prefix = remote.content_version, ""
    if _blocks_new_learners(client):
        student_id = _actor_student_id(request.args.get("actor"), client)
        if student_id is None or not _may_open(client, student_id):
            response = Response(render_template(licences.LIMIT_PAGE_TEMPLATE, client_name=client.name), status=403)
            response.headers["Cache-Control"] = "no-store"
            return _secured(response, client, issue)
        prefix = f"/g/{_grants().issue(package_id, version, student_id)}"
    index = _store().read_version(version)
    if index is None or index.get("package") != str(package_id) or sco >= len(index["scos"]):
        abort(404)
    target = packages.version_url("", package_id, version, index["scos"][sco]["href"], prefix)
    launch_query = request.query_string.decode("latin-1")
    if launch_query:
        target += ("&" if "?" in target else "?") + launch_query
    response = redirect(target, code=302)
    response.headers["Cache-Control"] = "no-store"
    return _secured(response, client, issue)


ACTOR_MAX = 4096  # the tracker's limit (XAPI_ACTOR_MAX)


def _actor_student_id(raw: str | None, client: Client) -> str | None:
    """The learner a cmi5 launch's ``actor`` names, normalised as the tracker's beacon would send it
    (``account.name``, else ``mbox`` without ``mailto:``; the first of an array); None if none."""
    if not raw or len(raw) > ACTOR_MAX:
        return None
    try:
        actor = json.loads(raw)
    except (ValueError, RecursionError):
        return None

    def first(value):
        return value[0] if isinstance(value, list) and value else value

    actor = first(actor)
    if not isinstance(actor, dict):
        return None
    account, mbox, found = first(actor.get("account")), first(actor.get("mbox")), None
    if isinstance(account, dict):
        name = account.get("name", account.get("accountName"))
        if isinstance(name, str | int) and not isinstance(name, bool):
            found = str(name)
    if (found is None or not found.strip()) and isinstance(mbox, str):
        found = re.sub(r"^\s*mailto:", "", mbox, flags=re.IGNORECASE)
    try:
        student_id = normalise_student_id(found) if found else None
        if student_id is not None:
            check_sealing(client.sealed, student_id)
    except InvalidIdentity:
        return None
    return student_id


@bp.get("/<uuid:package_id>/g/<grant>/launch/<int:sco>")
def granted_launch(package_id: uuid.UUID, grant: str, sco: int):
    """The launch address with the seat grant the launcher obtained: to the grant's version's player."""
    _remote, _issue, client = _package(package_id)
    found = _grants().read(grant, package_id=package_id, max_age=seat_grants.START_SECONDS)
    if found is None:
        return _grant_required(client)
    return _launch(package_id, found.version, sco, client, prefix=f"/g/{grant}")


def _launch(package_id: uuid.UUID, version: str, sco: int, client: Client, *, prefix: str) -> Response:
    index = _store().read_version(version)
    if index is None or index.get("package") != str(package_id) or sco >= len(index["scos"]):
        abort(404)
    if index.get("layout") == packages.PLAYER_LAYOUT:
        target = packages.player_url(package_id, version, sco, prefix)
    else:  # published before the player: the relay is in the launch page itself
        target = packages.version_url("", package_id, version, index["scos"][sco]["href"], prefix)
    response = redirect(target, code=302)
    response.headers["Cache-Control"] = "no-store"
    return _secured(response, client)


SEAT_CHECK_MAX_BYTES = 1024


@bp.post("/<uuid:package_id>/seat")
@csrf.exempt  # the content origin holds no session: there is nothing to forge
@limiter.limit(beacon_rate_limit)  # the launcher asks once per launch, like a beacon
def seat(package_id: uuid.UUID):
    """May this learner open the course? Asked by the launcher (in the LMS) before it frames it.

    Answered only to the client's LMS origins. For a client whose licence blocks new learners,
    an allowed learner gets a seat grant (``seat_grants``): the course opens only with it, and a
    new learner's seat is taken only by a beacon carrying it. Under the limit every learner gets
    the same answer, worked out without looking at who asks.
    """
    remote, _issue, client = _package(package_id)
    if not _lms_origin(client, request.headers.get("Origin")):
        return _seat_answer(jsonify(error="origin_not_allowed",
                                    message="ask from one of the client's allowed LMS origins"), client, 403)
    request.max_content_length = SEAT_CHECK_MAX_BYTES
    try:
        payload = json.loads(request.get_data(cache=False) or b"null")
        raw = payload.get("student_id") if isinstance(payload, dict) else None
        if not isinstance(raw, str):
            raise ValueError("no student_id")
        student_id = normalise_student_id(raw)
        check_sealing(client.sealed, student_id)
    except (ValueError, RecursionError, InvalidIdentity):
        return _seat_answer(jsonify(error="invalid_seat_check",
                                    message='send {"student_id": "..."} as JSON'), client, 400)
    try:
        blocking = licences.blocks_new_learners(db.session, client.id, _today())
    except SQLAlchemyError:
        db.session.rollback()
        blocking = True  # as before: answered allowed (below), with a grant
    finally:
        db.session.close()
    if not blocking:
        return _seat_answer(jsonify(allowed=True), client)
    allowed = _may_open(client, student_id)
    if not allowed:
        return _seat_answer(jsonify(allowed=False), client)
    return _seat_answer(jsonify(allowed=True, grant=_grants().issue(package_id, remote.content_version,
                                                                     student_id)), client)


def _may_open(client: Client, student_id: str) -> bool:
    """While the licence blocks new learners: may this learner (normalised ID) open the course?"""
    today = _today()
    try:
        return (licences.new_learners_admitted(db.session, client.id, today) or licences.remote_launch_for_student(
            db.session, current_app.extensions["pseudonymiser"], snapshot(db.session, client), student_id,
            today).allowed)
    except InvalidIdentity:
        # The client's pseudonym salt was deleted: it records nobody, so there is no seat to guard.
        return True
    except SQLAlchemyError as exc:
        # Our storage failing never keeps a learner from the course: it opens.
        db.session.rollback()
        log.warning("seat check answered allowed, storage unavailable: %s", type(exc).__name__)
        return True
    finally:
        db.session.close()


def _lms_origin(client: Client, origin: str | None) -> bool:
    """The launcher runs on the client's LMS: one of its allowed origins (any https LMS when none is set)."""
    if not origin:
        return False
    allowed = client.allowed_origins or []
    return origin in allowed if allowed else origin.startswith("https://")


def _seat_answer(response: Response, client: Client, status: int = 200) -> Response:
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    origin = request.headers.get("Origin")
    if status != 403 and _lms_origin(client, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return _secured(response, client)


@bp.get("/<uuid:package_id>/limit")
def limit_page(package_id: uuid.UUID):
    _remote, _issue, client = _package(package_id)
    # 200: the page itself is served as asked; the refusal was the seat check's answer.
    response = Response(render_template(licences.LIMIT_PAGE_TEMPLATE, client_name=client.name))
    response.headers["Cache-Control"] = "no-store"
    return _secured(response, client)


@bp.get("/<uuid:package_id>/<version>/<path:path>")
def content_file(package_id: uuid.UUID, version: str, path: str):
    remote, issue, client = _package(package_id)
    if _blocks_new_learners(client):
        return _grant_required(client)
    return _content_file(package_id, version, path, remote, issue, client)


@bp.get("/<uuid:package_id>/g/<grant>/<version>/<path:path>")
def granted_content_file(package_id: uuid.UUID, grant: str, version: str, path: str):
    """A file of the version the grant names: the player page while the grant is fresh, the course's
    other files for a learning session (``seat_grants``)."""
    remote, issue, client = _package(package_id)
    fresh = path == packages.PLAYER_FILE
    found = _grants().read(grant, package_id=package_id,
                           max_age=seat_grants.START_SECONDS if fresh else seat_grants.SESSION_SECONDS)
    if found is None or found.version != version:
        return _grant_required(client)
    return _content_file(package_id, version, path, remote, issue, client, grant=grant)


def _content_file(package_id: uuid.UUID, version: str, path: str, remote: RemoteContent, issue: PackageIssue,
                  client: Client, grant: str | None = None) -> Response:
    index = _store().read_version(version)
    if index is None or index.get("package") != str(package_id):
        abort(404)
    try:
        name = packages.safe_member_name(path)
    except packages.PackageError:
        abort(404)

    if name in packages.RESERVED_FILES:
        if name == packages.PLAYER_FILE:
            page = (packages.player_page(index, request.args.get("sco", 0, type=int), issue.course_title)
                    if index.get("layout") == packages.PLAYER_LAYOUT else None)
            if page is None:
                abort(404)
            response = Response(page, mimetype="text/html")
            response.headers["Cache-Control"] = "no-store"
            return _secured(response, client)
        if name == packages.TRACKER_FILE:
            # Under a grant, the tracker's beacons carry it: they take the learner's seat.
            body = packages.configured_tracker(
                beacon_url=current_app.config["PUBLIC_URL"] + packages.BEACON_PATH, key=remote.beacon_key,
                course=issue.course_title, package_id=package_id, scorm_version=issue.scorm_version,
                self_open=bool(index.get("self_open")), sealed="relayed" if client.sealed else None, grant=grant,
                activities=index.get("activities"), remote=True)
        else:
            body = packages.remote_api_source()
        response = Response(body, mimetype="text/javascript")
        response.headers["Cache-Control"] = "no-cache"
        response.add_etag()
        return _secured(response.make_conditional(request), client, issue)

    stored = _store().open_file(version, name)
    if stored is None:
        abort(404)
    if name in packages.au_pages(index):
        # A cmi5 AU's page, opened with the learner's launch parameters: the tracker added first in its
        # <head> (as in a deployed package), never kept by a cache, and no Referer from it carries them.
        with open(stored.path, "rb") as page:
            response = Response(packages.inject_tracker(page.read(), name), mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return _secured(response, client, issue)
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    # Werkzeug answers Range (206, 416) and If-None-Match / If-Range (304) from the file itself.
    try:
        response = send_file(stored.path, mimetype=mimetype, conditional=True, etag=stored.sha256,
                             max_age=None, last_modified=None)
    except RequestedRangeNotSatisfiable:
        response = Response(status=416, headers={"Content-Range": f"bytes */{stored.size}"})
    # A granted address is one learner's: no shared cache keeps it.
    response.headers["Cache-Control"] = ("no-cache" if mimetype == "text/html"
                                         else f"{'private' if grant else 'public'}, max-age={_FILE_MAX_AGE}")
    return _secured(response, client, issue)


# --- two origins, one app -----------------------------------------------------------


def _host_key(host: str, scheme: str) -> str:
    """``host[:port]`` as a Host header says it, lower-case, with the scheme's default port left out."""
    host = host.strip().lower()
    default = {"https": "443", "http": "80"}.get(scheme)
    if default and host.endswith(f":{default}") and not host.endswith("]"):
        host = host[: -len(default) - 1]
    return host


def _content_host(app: Flask) -> str | None:
    content_url = app.config.get("CONTENT_URL")
    if not content_url:
        return None
    scheme, _, netloc = content_url.partition("://")
    return _host_key(netloc, scheme)


class NoCookiesOnContent:
    """WSGI middleware: no response on the content host carries Set-Cookie, whatever set it."""

    def __init__(self, wsgi_app, content_host: str | None) -> None:
        self.wsgi_app, self.content_host = wsgi_app, content_host

    def __call__(self, environ, start_response):
        scheme = environ.get("wsgi.url_scheme", "https")
        # Behind a proxy the host may come as X-Forwarded-Host: either one naming the content host counts.
        names = [environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")]
        names += environ.get("HTTP_X_FORWARDED_HOST", "").split(",")
        if self.content_host is None or self.content_host not in {_host_key(n, scheme) for n in names}:
            return self.wsgi_app(environ, start_response)

        def start(status, headers, exc_info=None):
            return start_response(status, [(k, v) for k, v in headers if k.lower() != "set-cookie"], exc_info)

        return self.wsgi_app(environ, start)


def init_app(app: Flask) -> None:
    """The store, the blueprint, and routing by host (run before CSRF, limits and login checks)."""
    app.extensions["content_store"] = DirectoryStore(app.config["CONTENT_DIR"])
    app.register_blueprint(bp)
    content_host = _content_host(app)

    def route_by_host():
        on_content = content_host is not None and _host_key(request.host, request.scheme) == content_host
        for_content = (request.blueprint == bp.name)
        if on_content != for_content:
            abort(404)

    app.before_request_funcs.setdefault(None, []).insert(0, route_by_host)
    app.wsgi_app = NoCookiesOnContent(app.wsgi_app, content_host)
