"""The utilisation tracking server: create_app() wires settings, extensions, faces, errors and CLI."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import load_config


def create_app(test_config: dict | None = None) -> Flask:
    instance_path = Path(__file__).resolve().parent.parent / "instance"
    env = None
    if test_config:
        # Tests pass the environment and, to keep generated secrets apart, an instance folder.
        env = test_config.pop("ENV", None)
        instance_path = Path(test_config.pop("INSTANCE_PATH", instance_path))
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True)
    app.config.from_mapping(load_config(app.instance_path, env))
    if test_config:
        app.config.from_mapping(test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    # Navigation entries (endpoint, label, roles); each face adds its own.
    app.config.setdefault("NAV_ITEMS", [])
    app.context_processor(lambda: {"nav_items": [
        item for item in app.config["NAV_ITEMS"] if item[0] in app.view_functions
    ]})
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    _configure_logging(app)
    return app


def register_extensions(app: Flask) -> None:
    # Every table on db.metadata (Alembic compares against it): each domain's model module builds on
    # app/models.py, which imports none of them.
    from app import models, security  # noqa: F401
    from app.clients.services import ClientDirectory
    from app.extensions import csrf, db, limiter, login_manager, migrate
    from app.identity.student_ids import Pseudonymiser
    from app.ingest import models as ingest_models  # noqa: F401
    from app.learners import held_back_models  # noqa: F401
    from app.learners import models as learner_models  # noqa: F401
    from app.licensing import models as licence_models  # noqa: F401
    from app.licensing.seat_grants import SeatGrants
    from app.outbound import models as outbound_models  # noqa: F401

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    security.init_app(app)
    with app.app_context():
        _tune_sqlite(db.engine)
    app.extensions["pseudonymiser"] = Pseudonymiser(
        app.config["PSEUDONYM_SECRET"], app.config["PSEUDONYM_CACHE_SIZE"]
    )
    app.extensions["client_directory"] = ClientDirectory(ttl=app.config["CLIENT_CACHE_SECONDS"])
    app.extensions["seat_grants"] = SeatGrants(app.config["SECRET_KEY"])


def _tune_sqlite(engine) -> None:
    """WAL lets readers run beside the writer; synchronous=FULL keeps every acknowledged commit."""
    if engine.dialect.name != "sqlite":
        return
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def register_blueprints(app: Flask) -> None:
    from app import admin, content, meta

    # Views register their routes on their package's blueprint when imported: loaded here, so a
    # package never imports its own faces (they import it, for the blueprint and shared helpers).
    from app.admin import (  # noqa: F401
        audit,
        clients,
        golive,
        held_back,
        identities,
        keys,
        licences,
        staff,
        webhook_deliveries,
    )
    from app.billing.api import bp as api_bp
    from app.billing.pages import bp as pages_bp
    from app.extensions import csrf
    from app.ingest import beacon
    from app.packages import sealing_page as seal
    from app.staff import auth
    from app.staff.auth import second_factor, tokens  # noqa: F401  (the second step; /account/tokens)

    # The JSON API authenticates with keys and bearer tokens, not cookies: no CSRF.
    csrf.exempt(beacon.bp)
    csrf.exempt(api_bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(seal.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(beacon.bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(pages_bp)
    content.init_app(app)  # remote package content: only on CONTENT_URL's host
    # Staff land on the billing overview; client users are sent on to their own client's page.
    app.config["NAV_ITEMS"] += [
        ("admin.clients", "Clients", ("admin", "csm")),
        ("billing_pages.overview", "Billing", ("admin", "csm", "billing", "client")),
        ("admin.audit_log", "Audit log", ("admin", "csm")),
        ("admin.webhooks_list", "Webhooks", ("admin", "csm")),
        ("admin.staff", "Staff users", ("admin",)),
        ("auth.security", "Sign-in security", ("admin", "csm", "billing", "client")),
        ("auth.tokens", "API tokens", ("admin", "csm", "billing", "client")),
    ]


def register_errorhandlers(app: Flask) -> None:
    from app.errors import register_errorhandlers as register

    register(app)


def register_commands(app: Flask) -> None:
    from app.cli import register

    register(app)


def _configure_logging(app: Flask) -> None:
    gunicorn_logger = logging.getLogger("gunicorn.error")
    if gunicorn_logger.handlers:
        app.logger.handlers = gunicorn_logger.handlers
        app.logger.setLevel(gunicorn_logger.level)
        for name in ("app", "flask-limiter"):  # the limiter says when its store goes down and recovers
            logging.getLogger(name).handlers = gunicorn_logger.handlers
            logging.getLogger(name).setLevel(logging.INFO)
