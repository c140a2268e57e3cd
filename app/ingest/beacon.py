"""The public face a SCORM package talks to: POST /api/v1/beacons."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from app.clients.services import ClientError, normalise_origin
from app.extensions import db, limiter
from app.ingest.beacons import accept_beacon, committer_for
from app.ingest.schemas import BeaconSchema

bp = Blueprint("beacon", __name__, url_prefix="/api/v1")

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


def beacon_rate_limit() -> str:
    """BEACON_RATE_LIMIT: per client address, for every request a package's scripts send."""
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
@limiter.limit(beacon_rate_limit)
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

    outcome = accept_beacon(db.session, committer_for(current_app), data["key"], origin, data,
                            own_origins=_own_origins, grants=current_app.extensions["seat_grants"])
    if outcome.acknowledged:
        return Response(status=204)
    if outcome.status == "unavailable":
        return _retry_after(_error(503, "unavailable", outcome.message))
    if outcome.reason == "invalid_beacon":
        return _error(400, "invalid_beacon", outcome.message, fields=outcome.fields)
    if outcome.reason == "origin_not_allowed":
        g.origin_refused = True
    return _error(403, outcome.reason, outcome.message)


def _own_origins() -> set[str]:
    """This server's origin as browsers send it: from PUBLIC_URL (behind a proxy) and the request."""
    origins = {request.host_url.rstrip("/")}
    for setting in ("PUBLIC_URL", "CONTENT_URL"):  # remote content sends beacons from CONTENT_URL
        try:
            origins.add(normalise_origin(current_app.config[setting] or ""))
        except ClientError:
            pass
    return origins

