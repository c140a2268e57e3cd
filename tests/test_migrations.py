"""Migrations: `flask db upgrade` on an empty database, then `flask db check` finds no drift from the models.

Runs on the database kind of the session: SQLite, or a fresh PostgreSQL
database (created here, dropped after) when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory
from conftest import ROOT, TEST_SECRETS, _config, _postgres_url, scratch_database_name
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db

MODEL_TABLES = {"clients", "client_keys", "courses", "learners", "events", "daily_usage", "refused_origins",
                "package_issues", "staff_users", "staff_sessions", "api_tokens", "audit_entries"}


@pytest.fixture
def empty_database(database_kind, tmp_path):
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin_url = make_url(_postgres_url())
    name = scratch_database_name("migrate")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def flask_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(APP_ENV="test", DATABASE_URL=url, **TEST_SECRETS)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_upgrade_on_an_empty_database_then_check_reports_no_drift(empty_database):
    upgrade = flask_cli(empty_database, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    engine = create_engine(empty_database)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert MODEL_TABLES <= tables
    check = flask_cli(empty_database, "db", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    assert head == ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_check_notices_drift_and_downgrade_upgrade_round_trips(empty_database):
    """The check is not blind: a schema that differs from the models fails it."""
    application = create_app(_config(empty_database))
    runner = application.test_cli_runner()
    with application.app_context():
        try:
            assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
            with db.engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_daily_usage_learner"))
            drift = runner.invoke(args=["db", "check"])
            assert drift.exit_code != 0
            with db.engine.begin() as conn:
                conn.execute(text("CREATE INDEX ix_daily_usage_learner ON daily_usage (learner_id)"))
            assert runner.invoke(args=["db", "check"]).exit_code == 0

            assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
            db.engine.dispose()
            assert not (set(inspect(db.engine).get_table_names()) & MODEL_TABLES)
            assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
            assert runner.invoke(args=["db", "check"]).exit_code == 0
        finally:
            db.session.remove()
            db.engine.dispose()
