"""The public face a SCORM package talks to: POST /api/v1/beacons."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from ..extensions import db, limiter
from ..identity import InvalidIdentity
from ..schemas import BeaconSchema
from ..services.clients import ClientError, normalise_origin
from ..services.ingest import Beacon, record_beacon, record_refused_origin

bp = Blueprint("beacon", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

_schema = BeaconSchema()
_MEDIA_TYPES = {"application/json", "text/plain"}
MAX_JSON_DEPTH = 4


def _error(status: int, error: str, message: str, **extra) -> Response:
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    return response


def _cors(response: Response, origin: str | None) -> Response:
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


@bp.after_request
def _cors_on_answers(response: Response) -> Response:
    """Let the tracker read every answer (it drops a 4xx, retries a 5xx or 429).

    Only a refused origin gets no CORS header: that LMS is not one of ours.
    """
    if request.method == "POST" and not g.get("origin_refused"):
        _cors(response, request.headers.get("Origin"))
    return response


def _too_deep(text: str) -> bool:
    """Refuse nesting before json.loads recurses into it (a beacon is one flat object)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _retry_after(response: Response) -> Response:
    response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER_SECONDS"])
    return response


def _beacon_rate_limit() -> str:
    return current_app.config["BEACON_RATE_LIMIT"]


@bp.route("/beacons", methods=["OPTIONS"])
def preflight():
    """CORS preflight. Trackers send text/plain and need none, but a browser may still ask."""
    origin = request.headers.get("Origin")
    response = Response(status=204)
    directory = current_app.extensions["client_directory"]
    try:
        allowed = bool(origin) and directory.allowed_any_origin(db.session, origin)
    except SQLAlchemyError:
        db.session.rollback()
        return _retry_after(_error(503, "unavailable", "storage is unavailable, try again later"))
    if allowed:
        _cors(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


@bp.post("/beacons")
@limiter.limit(_beacon_rate_limit)
def receive_beacon():
    origin = request.headers.get("Origin")
    if request.mimetype not in _MEDIA_TYPES:
        return _error(415, "unsupported_media_type", "send the beacon as application/json or text/plain JSON")

    limit = current_app.config["BEACON_MAX_BYTES"]
    # One byte more than the limit is read: for a chunked body (no Content-Length)
    # werkzeug's stream stops quietly at its limit, so a body cut there could pass.
    request.max_content_length = limit + 1
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raw = None
    if raw is None or len(raw) > limit:
        return _error(413, "too_large", f"a beacon is at most {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "invalid_beacon", "the body is not UTF-8", fields={"_body": ["not UTF-8"]})
    if _too_deep(text):
        return _error(400, "invalid_beacon", "the body is nested too deeply", fields={"_body": ["too deep"]})
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return _error(400, "invalid_beacon", "the body is not JSON", fields={"_body": ["not JSON"]})
    if not isinstance(payload, dict):
        return _error(400, "invalid_beacon", "the body must be a JSON object", fields={"_body": ["not an object"]})
    try:
        data = _schema.load(payload)
    except ValidationError as exc:
        # marshmallow's messages name the problem, never echo the value.
        return _error(400, "invalid_beacon", "the beacon has invalid fields", fields=exc.normalized_messages())

    directory = current_app.extensions["client_directory"]
    try:
        client = directory.client_for_key(db.session, data["key"])
        if client is None or not client.active:
            return _error(403, "unknown_key", "this key is unknown or no longer active")
        if not client.tracked:
            return _error(403, "untracked_licence", "this client's licence is not tracked")
        if client.anonymised and client.pseudonym_key is None:
            return _error(403, "pseudonyms_shredded",
                          "this client's pseudonym salt was deleted; it records no more learners")
        # Remote package content is served from here: its framing is limited to the client's origins.
        if not client.origin_allowed(origin) and not (origin is not None and origin in _own_origins()):
            g.origin_refused = True
            record_refused_origin(db.session, client.id, origin or "(none)")
            return _error(403, "origin_not_allowed", "this LMS origin is not allowed for the key")
        beacon = Beacon(
            course=data["course"], student_id=data["student_id"], student_name=data["student_name"],
            event=data["event"], event_id=data["event_id"], scorm_version=data["scorm_version"],
            package=data["package"],
        )
        record_beacon(db.session, current_app.extensions["pseudonymiser"], directory, client, beacon,
                      lms_host=_host(origin))
    except InvalidIdentity as exc:
        return _error(400, "invalid_beacon", str(exc), fields={"student_id": [str(exc)]})
    except (DBAPIError, SQLAlchemyError) as exc:
        db.session.rollback()
        # The exception text may carry SQL; parameters are hidden by the engine options.
        log.warning("beacon not stored, storage unavailable: %s", type(exc).__name__)
        return _retry_after(_error(503, "unavailable", "storage is unavailable, try again later"))
    return Response(status=204)


def _own_origins() -> set[str]:
    """This server's origin as browsers send it: from PUBLIC_URL (behind a proxy) and the request."""
    origins = {request.host_url.rstrip("/")}
    for setting in ("PUBLIC_URL", "CONTENT_URL"):  # remote content sends beacons from CONTENT_URL
        try:
            origins.add(normalise_origin(current_app.config[setting] or ""))
        except ClientError:
            pass
    return origins


def _host(origin: str | None) -> str | None:
    if not origin or origin == "null":
        return None
    return origin.split("://", 1)[-1][:255]
