"""Error answers: JSON for the API face, HTML pages for people; never a stack trace."""

from __future__ import annotations

import logging
import traceback
import uuid

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _answer(status: int, error: str, message: str, headers: dict | None = None):
    if _wants_json():
        response = jsonify({"error": error, "message": message})
    else:
        response = current_app.make_response(
            (render_template("error.html", status=status, message=message), status)
        )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        log.warning("csrf refused: %s", exc.description)
        return _answer(400, "csrf_failed", "The form expired or was not sent from this site. Reload and try again.")

    @app.errorhandler(429)
    def _too_many(exc):
        retry = None
        if hasattr(exc, "retry_after") and exc.retry_after:
            retry = str(int(exc.retry_after))
        headers = {"Retry-After": retry or str(current_app.config["RETRY_AFTER_SECONDS"])}
        message = "Too many requests; wait a moment and try again."
        limit = getattr(exc, "limit", None)
        if limit is not None and getattr(limit, "error_message", None):
            message = exc.description  # a limit that explains itself (e.g. sign-in attempts)
        return _answer(429, "rate_limited", message, headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if isinstance(exc, InternalServerError):
            return _unexpected(exc)
        code = exc.code or 500
        error = (exc.name or "error").lower().replace(" ", "_")
        allow = exc.get_response().headers.get("Allow")
        return _answer(code, error, exc.description or exc.name, {"Allow": allow} if allow else None)

    @app.errorhandler(SQLAlchemyError)
    def _storage(exc: SQLAlchemyError):
        from app.extensions import db

        db.session.rollback()
        log.warning("storage unavailable: %s", type(exc).__name__)
        return _answer(503, "unavailable", "Storage is unavailable; try again shortly.",
                       {"Retry-After": str(current_app.config["RETRY_AFTER_SECONDS"])})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        error_id = uuid.uuid4().hex[:12]
        # The type and where it happened, not str(exc): messages may carry request data.
        log.error("unexpected error %s: %s at\n%s", error_id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return _answer(500, "internal_error", f"Something went wrong on our side (error {error_id}).")
