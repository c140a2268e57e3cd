"""The home page, the health check and the OpenAPI description."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, redirect, url_for
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.billing.schemas import ClientListSchema, ClientsQuerySchema, UsageQuerySchema, UsageSchema
from app.extensions import db, limiter
from app.ingest.schemas import BeaconSchema
from app.ratelimits import store_state
from app.schemas import ErrorSchema

bp = Blueprint("meta", __name__)


@bp.get("/")
def home():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    from app.staff.auth import home_for

    return redirect(home_for(current_user))


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError:
        db.session.rollback()
        response = jsonify({"status": "unavailable", "database": "unreachable", "rate_limits": _limits_state()})
        response.status_code = 503
        response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER_SECONDS"])
        return response
    # The rate-limit store's state is detail for operators: the database alone decides 200 or 503.
    return jsonify({"status": "ok", "database": "ok", "rate_limits": _limits_state()})


def _limits_state() -> str:
    return store_state(limiter) if current_app.config.get("RATELIMIT_ENABLED", True) else "disabled"


def build_spec() -> dict:
    spec = APISpec(
        title="SCORM usage tracker API",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Beacons in from SCORM packages; unique users per course and date out."},
        servers=[{"url": current_app.config["PUBLIC_URL"]}],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Beacon", schema=BeaconSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("Usage", schema=UsageSchema)
    spec.components.schema("ClientList", schema=ClientListSchema)
    error = {"application/json": {"schema": "Error"}}
    retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    spec.path(
        path="/api/v1/beacons",
        operations={
            "post": {
                "summary": "Record a learner's launch (or status change) of a course",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": "Beacon"},
                    "text/plain": {"schema": "Beacon"},
                }},
                "responses": {
                    "204": {"description": "Stored, or already stored under this event ID."},
                    "400": {"description": "Invalid beacon; `fields` says which.", "content": error},
                    "403": {"description": "Unknown or inactive key, origin not allowed, or untracked licence.",
                            "content": error},
                    "413": {"description": "Body too large.", "content": error},
                    "415": {"description": "Not application/json or text/plain.", "content": error},
                    "429": {"description": "Too many beacons; retry later.", "headers": retry, "content": error},
                    "503": {"description": "Storage unavailable; retry later.", "headers": retry, "content": error},
                },
            },
            "options": {"summary": "CORS preflight", "responses": {"204": {"description": "Preflight answer."}}},
        },
    )
    spec.path(
        path="/api/v1/clients",
        operations={
            "get": {
                "summary": "The clients this token may see (vendor staff: all; a client user: its own), each with "
                           "the licence term and seat window containing `on`, seats used, overage, billable seats "
                           "and the forecast with its 90 % range",
                "security": [{"bearer": []}],
                "parameters": [{"in": "query", "schema": ClientsQuerySchema}],
                "responses": {
                    "200": {"description": "Clients.", "content": {"application/json": {"schema": "ClientList"}}},
                    "400": {"description": "Bad or future `on`.", "content": error},
                    "401": {"description": "No or bad bearer token.", "content": error},
                },
            }
        },
    )
    spec.path(
        path="/api/v1/clients/{slug}/usage",
        parameters=[{"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}],
        operations={
            "get": {
                "summary": "Unique users and launches per course and UTC date over an inclusive range",
                "security": [{"bearer": []}],
                "parameters": [{"in": "query", "schema": UsageQuerySchema}],
                "responses": {
                    "200": {"description": "Usage.", "content": {"application/json": {"schema": "Usage"}}},
                    "400": {"description": "Bad dates.", "content": error},
                    "401": {"description": "No or bad bearer token.", "content": error},
                    "404": {"description": "No such client (or not yours).", "content": error},
                },
            }
        },
    )
    spec.path(path="/healthz", operations={"get": {
        "summary": "Database health; `rate_limits` says whether the shared rate-limit store answers",
        "responses": {"200": {"description": "The database answers."}, "503": {"description": "It does not."}}}})
    return spec.to_dict()


@bp.get("/api/openapi.json")
def openapi():
    return jsonify(build_spec())
