"""Settings from the environment: fatal in production when a secret is missing, generated once in development."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, TEST_SECRETS

from app import create_app
from app.config import ConfigError, load_config
from app.extensions import db


def build(tmp_path, **env):
    application = create_app({"ENV": {"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", **env},
                              "INSTANCE_PATH": str(tmp_path / "instance")})
    with application.app_context():
        db.engine.dispose()
    return application


@pytest.mark.parametrize("missing", [["SECRET_KEY"], ["PSEUDONYM_SECRET"], ["SECRET_KEY", "PSEUDONYM_SECRET"]])
def test_production_without_a_secret_stops_with_a_clear_message(tmp_path, missing):
    env = {"APP_ENV": "production", **{k: v for k, v in TEST_SECRETS.items() if k not in missing}}
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, **env)
    message = str(caught.value)
    for name in missing:
        assert name in message
    assert "APP_ENV=production" in message
    assert not (tmp_path / "instance" / "secrets.json").exists(), "production must not invent secrets"


def test_production_blank_secret_counts_as_missing(tmp_path):
    with pytest.raises(ConfigError, match="PSEUDONYM_SECRET"):
        build(tmp_path, APP_ENV="production", SECRET_KEY="x" * 40, PSEUDONYM_SECRET="   ")


def test_production_with_secrets_starts(tmp_path):
    application = build(tmp_path, APP_ENV="production", **TEST_SECRETS)
    assert application.config["SECRET_KEY"] == TEST_SECRETS["SECRET_KEY"]
    assert application.config["PSEUDONYM_SECRET"] == TEST_SECRETS["PSEUDONYM_SECRET"]
    assert not application.config["TESTING"]


def test_development_generates_secrets_once_and_reuses_them(tmp_path):
    first = build(tmp_path, APP_ENV="development")
    path = tmp_path / "instance" / "secrets.json"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert first.config["SECRET_KEY"] == stored["SECRET_KEY"] and len(stored["SECRET_KEY"]) >= 32
    assert first.config["PSEUDONYM_SECRET"] == stored["PSEUDONYM_SECRET"]
    assert stored["SECRET_KEY"] != stored["PSEUDONYM_SECRET"]

    second = build(tmp_path, APP_ENV="development")
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert second.config["PSEUDONYM_SECRET"] == first.config["PSEUDONYM_SECRET"]
    assert json.loads(path.read_text()) == stored

    # A secret from the environment wins and leaves the file alone.
    third = build(tmp_path, APP_ENV="development", PSEUDONYM_SECRET="from-the-environment")
    assert third.config["PSEUDONYM_SECRET"] == "from-the-environment"
    assert third.config["SECRET_KEY"] == stored["SECRET_KEY"]
    assert json.loads(path.read_text()) == stored


def test_development_fills_in_a_missing_secret_without_changing_the_other(tmp_path):
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "secrets.json").write_text(json.dumps({"PSEUDONYM_SECRET": "kept"}))
    application = build(tmp_path, APP_ENV="development")
    assert application.config["PSEUDONYM_SECRET"] == "kept"
    assert json.loads((folder / "secrets.json").read_text())["SECRET_KEY"] == application.config["SECRET_KEY"]


def test_default_app_env_is_development(tmp_path):
    config = load_config(tmp_path, {"DATABASE_URL": "sqlite://"})
    assert config["APP_ENV"] == "development"
    assert (tmp_path / "secrets.json").exists()


def test_database_url_defaults_and_postgres_spellings(tmp_path):
    env = {"APP_ENV": "test", **TEST_SECRETS}
    assert load_config(tmp_path, env)["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'tracker.db'}"
    for url in ("postgres://u@h/db", "postgresql://u@h/db"):
        assert load_config(tmp_path, {**env, "DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"] == \
            "postgresql+psycopg://u@h/db"
    assert load_config(tmp_path, env)["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True


@pytest.mark.parametrize("env, needle", [
    ({"APP_ENV": "staging"}, "APP_ENV"),
    ({"PSEUDONYM_TIME_COST": "two"}, "PSEUDONYM_TIME_COST"),
    ({"BEACON_MAX_BYTES": "4k"}, "BEACON_MAX_BYTES"),
])
def test_bad_settings_are_named(tmp_path, env, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path, {"APP_ENV": "test", **TEST_SECRETS, **env})


def test_the_flask_cli_refuses_to_start_in_production_without_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PSEUDONYM_SECRET")}
    env.update(APP_ENV="production", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "client", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "PSEUDONYM_SECRET" in result.stderr


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("Yes", True), ("on", True),
                                           ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_one_truthy_rule_for_every_flag(tmp_path, raw, expected):
    config = load_config(tmp_path, {"APP_ENV": "test", "RATELIMIT_ENABLED": raw, "SESSION_COOKIE_SECURE": raw})
    assert config["RATELIMIT_ENABLED"] is expected and config["SESSION_COOKIE_SECURE"] is expected


@pytest.mark.parametrize("name, raw", [("RATELIMIT_ENABLED", "maybe"), ("TRUSTED_PROXIES", "one"),
                                       ("SESSION_HOURS", "12h")])
def test_a_bad_value_is_a_clear_error(tmp_path, name, raw):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {"APP_ENV": "test", name: raw})
    assert name in str(caught.value) and raw in str(caught.value)


def test_rate_limits_default_to_a_store_shared_by_the_machines_workers(tmp_path):
    config = load_config(tmp_path, {"APP_ENV": "development"})
    assert config["RATELIMIT_STORAGE_URI"] == f"machine://{(tmp_path / 'ratelimits.db').resolve()}"
