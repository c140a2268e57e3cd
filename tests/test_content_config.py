"""CONTENT_URL and CONTENT_DIR: their defaults, and what start-up and a remote build refuse."""

from __future__ import annotations

import pytest
from conftest import TEST_PARAMS, TEST_SECRETS

from app import create_app, packages
from app.config import ConfigError, load_config
from app.extensions import db


def config(tmp_path, **env):
    return load_config(tmp_path / "instance", {"DATABASE_URL": "sqlite://", **TEST_SECRETS, **env})


def test_development_content_origin_is_public_url_with_the_other_loopback_name(tmp_path):
    assert config(tmp_path)["CONTENT_URL"] == "https://localhost:8443"
    assert config(tmp_path, PUBLIC_URL="https://localhost:9443")["CONTENT_URL"] == "https://127.0.0.1:9443"
    assert config(tmp_path, PORT="9000")["CONTENT_URL"] == "https://localhost:9000"
    assert config(tmp_path, PUBLIC_URL="https://track.example")["CONTENT_URL"] is None
    assert config(tmp_path)["CONTENT_DIR"] == str(tmp_path / "instance" / "content")
    assert config(tmp_path, CONTENT_DIR="/srv/content")["CONTENT_DIR"] == "/srv/content"


def test_content_url_is_kept_as_an_origin_and_bad_values_stop_start_up(tmp_path):
    assert config(tmp_path, CONTENT_URL="https://Content.Vendor.Example:443/")["CONTENT_URL"] == \
        "https://content.vendor.example"
    for bad in ("content.vendor.example", "ftp://content.example", "https://content.example/path",
                "https://content.example:99999"):
        with pytest.raises(ConfigError, match="CONTENT_URL"):
            config(tmp_path, CONTENT_URL=bad)


@pytest.mark.parametrize("content_url", ["https://track.vendor.example", "https://TRACK.vendor.example:443"])
def test_content_url_with_the_apps_own_origin_is_refused_at_start_up(tmp_path, content_url):
    with pytest.raises(ConfigError, match="origin of its own"):
        create_app({"ENV": {"APP_ENV": "production", **TEST_SECRETS, "DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
                            "PUBLIC_URL": "https://track.vendor.example", "CONTENT_URL": content_url},
                    "INSTANCE_PATH": str(tmp_path / "instance")})


def test_production_without_content_url_refuses_a_remote_build_with_a_message(tmp_path, database_url):
    app = create_app({"ENV": {"APP_ENV": "production", **TEST_SECRETS, "DATABASE_URL": database_url,
                              "PUBLIC_URL": "https://track.vendor.example",
                              "CONTENT_DIR": str(tmp_path / "content")},
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    assert app.config["CONTENT_URL"] is None
    from app.clients import services as client_service

    with app.app_context():
        client, _ = client_service.create_client(db.session, name="Acme", actor="t", params=TEST_PARAMS)
        with pytest.raises(packages.PackageError, match="remote packages need CONTENT_URL") as caught:
            packages.package_bytes(db.session, client=client, course_title="C", scorm_version="1.2",
                                   mode="remote", server_url=app.config["PUBLIC_URL"], issued_by="t")
        assert "set it and restart" in str(caught.value)
        # A deployed build still works.
        packages.package_bytes(db.session, client=client, course_title="C", scorm_version="1.2",
                               server_url=app.config["PUBLIC_URL"], issued_by="t")
        runner = app.test_cli_runner()
        result = runner.invoke(args=["package", "build", "--client", client.slug, "--course", "C", "--scorm", "1.2",
                                     "--mode", "remote", "-o", str(tmp_path / "r.zip")])
        assert result.exit_code != 0 and "remote packages need CONTENT_URL" in result.output
        assert not (tmp_path / "r.zip").exists()
        db.session.remove()
        db.engine.dispose()
