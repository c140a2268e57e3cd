"""Remote packages: the thin zip, the content kept and served here, republishing.

The browser journey (a real LMS runtime relaying to the live server) is in
tests/test_remote_browser.py.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, PackageIssue, RemoteContent
from app.services import packages
from conftest import beacon_body
from scorm_content import authoring_zip, script_config, validate

SERVER = "https://track.vendor.example"


def build(client, version="1.2", content=None, title="Anti-Bribery"):
    data, built = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                         content=content, mode="remote", server_url=SERVER, issued_by="test")
    return zipfile.ZipFile(io.BytesIO(data)), built


def launcher_config(archive: zipfile.ZipFile) -> dict:
    return script_config(archive, "remote-launcher.js")


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_remote_zip_holds_only_the_launcher_and_a_valid_manifest(make_client, version, tmp_path):
    client, _ = make_client()
    archive, built = build(client, version)
    assert sorted(archive.namelist()) == sorted(["imsmanifest.xml", *packages.REMOTE_LAUNCHER_FILES])
    assert validate(archive.read("imsmanifest.xml"), version, tmp_path) == []
    package_id = built.issue.package_id
    assert launcher_config(archive) == {"serverOrigin": SERVER, "scormVersion": version,
                                        "contentUrl": f"{SERVER}/remote/{package_id}/index.html"}
    # The tracker in the thin zip is unconfigured (only its API finder runs): no key anywhere.
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"ck_" not in everything and b"course.js" not in everything
    assert b"/*@TRACKER_CONFIG@*/ null" in archive.read(packages.TRACKER_FILE)
    stored = db.session.scalar(select(RemoteContent))
    assert stored.package_id == package_id and stored.launch_file == "index.html"
    assert stored.beacon_key.startswith("ck_") and stored.beacon_key[:8] == built.key_prefix
    assert set(zipfile.ZipFile(io.BytesIO(stored.content)).namelist()) == {"index.html", "course.css", "course.js"}
    assert db.session.scalar(select(PackageIssue.mode)) == "remote"


def test_remote_package_of_authoring_content_stores_it_whole(make_client):
    client, _ = make_client()
    archive, built = build(client, "2004", content=io.BytesIO(authoring_zip("2004")))
    assert launcher_config(archive)["contentUrl"].endswith(f"/remote/{built.issue.package_id}/course/story.html")
    stored = db.session.scalar(select(RemoteContent))
    assert stored.launch_file == "course/story.html"
    assert "imsmanifest.xml" in zipfile.ZipFile(io.BytesIO(stored.content)).namelist()


def test_launcher_checks_messages_against_the_servers_origin_as_browsers_write_it(make_client):
    client, _ = make_client()
    data, _ = packages.package_bytes(db.session, client=client, course_title="A", scorm_version="1.2",
                                     mode="remote", server_url="https://Track.Vendor.Example:443", issued_by="t")
    assert launcher_config(zipfile.ZipFile(io.BytesIO(data)))["serverOrigin"] == "https://track.vendor.example"


def test_remote_is_refused_for_a_perpetual_client(make_client):
    client, _ = make_client(licence="perpetual")
    with pytest.raises(packages.PackageError, match="perpetual-licence client gets untracked packages"):
        build(client)
    assert db.session.scalar(select(PackageIssue)) is None


# --- serving ---------------------------------------------------------------------


def test_launch_page_is_served_with_relay_and_tracker_and_may_be_framed_by_the_lms(make_client, client):
    customer, _ = make_client(origins=["https://lms.acme.example", "https://lms2.acme.example"])
    _, built = build(customer)
    base = f"/remote/{built.issue.package_id}"
    page = client.get(f"{base}/index.html")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert ('<script src="scorm-remote-api.js"></script>\n<script src="scorm-usage-tracker.js"></script>' in html)
    assert html.index("scorm-usage-tracker.js") < html.index("course.js")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors https://lms.acme.example https://lms2.acme.example;" in policy
    assert "script-src 'self'" in policy and "X-Frame-Options" not in page.headers
    assert page.headers["Cache-Control"] == "no-cache"

    tracker = client.get(f"{base}/scorm-usage-tracker.js")
    assert tracker.mimetype in ("text/javascript", "application/javascript")
    config = json.loads(next(line for line in tracker.get_data(as_text=True).splitlines()
                             if "var CONFIG =" in line).split("=", 1)[1].strip().rstrip(";"))
    stored = db.session.scalar(select(RemoteContent))
    assert config == {"url": "/api/v1/beacons", "key": stored.beacon_key, "course": "Anti-Bribery",
                      "packageId": str(built.issue.package_id), "scormVersion": "1.2"}
    assert b"scorm-remote=" in client.get(f"{base}/scorm-remote-api.js").data
    css = client.get(f"{base}/course.css")
    assert css.mimetype == "text/css" and css.headers["ETag"]
    assert client.get(f"{base}/course.css", headers={"If-None-Match": css.headers["ETag"]}).status_code == 304
    # Other pages keep the app's own policy.
    assert client.get("/healthz").headers.get("X-Frame-Options", "DENY") == "DENY"


def test_any_https_lms_may_frame_when_no_origins_are_set(make_client, client):
    customer, _ = make_client()
    _, built = build(customer)
    page = client.get(f"/remote/{built.issue.package_id}/index.html")
    assert page.headers["Content-Security-Policy"].startswith("frame-ancestors https:;")


def test_unknown_packages_files_and_unsafe_paths_are_404(make_client, client):
    customer, _ = make_client()
    _, built = build(customer)
    deployed, _ = packages.package_bytes(db.session, client=customer, course_title="Other", scorm_version="1.2",
                                         server_url=SERVER, issued_by="test")
    base = f"/remote/{built.issue.package_id}"
    other = db.session.scalars(select(PackageIssue.package_id).where(PackageIssue.mode == "deployed")).one()
    for url in (f"{base}/missing.html", f"{base}/../index.html", f"{base}/%2e%2e/index.html", f"{base}/a\\b",
                "/remote/00000000-0000-0000-0000-000000000000/index.html", f"/remote/{other}/index.html",
                "/remote/not-a-uuid/index.html"):
        assert client.get(url).status_code == 404, url
    customer.active = False
    db.session.commit()
    assert client.get(f"{base}/index.html").status_code == 404


def test_beacon_from_the_servers_own_origin_passes_the_lms_origin_check(make_client, client):
    customer, _ = make_client(origins=["https://lms.acme.example"])
    _, built = build(customer)
    key = db.session.scalar(select(RemoteContent.beacon_key))
    body = beacon_body(key, package=str(built.issue.package_id))
    assert client.post("/api/v1/beacons", json=body, headers={"Origin": "https://elsewhere.example"}).status_code == 403
    body = beacon_body(key, package=str(built.issue.package_id))
    assert client.post("/api/v1/beacons", json=body, headers={"Origin": "https://localhost"}).status_code == 204


# --- republishing ----------------------------------------------------------------


def test_cli_builds_remote_then_republish_replaces_the_content(runner, make_client, client, tmp_path):
    customer, _ = make_client()
    target = tmp_path / "remote.zip"
    result = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "Ethics",
                                 "--scorm", "1.2", "--mode", "remote", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["mode"] == "remote" and "index.html" in zipfile.ZipFile(target).namelist()
    package_id = data["package_id"]
    assert b"course.js" in client.get(f"/remote/{package_id}/index.html").data

    folder = tmp_path / "v2"
    folder.mkdir()
    (folder / "index.html").write_text("<!DOCTYPE html><html><head><title>v2</title></head>"
                                       "<body>Version 2</body></html>")
    result = runner.invoke(args=["package", "republish", "--package", package_id, "--content", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    page = client.get(f"/remote/{package_id}/index.html").get_data(as_text=True)
    assert "Version 2" in page and "scorm-remote-api.js" in page
    assert client.get(f"/remote/{package_id}/course.js").status_code == 404
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "package.republish"))
    assert entry.actor == "cli" and entry.after["package_id"] == package_id

    wrong = runner.invoke(args=["package", "republish", "--package", package_id,
                                "--content", str(tmp_path / "remote.zip")])
    assert wrong.exit_code != 0 and "already holds" in wrong.output  # the thin zip itself is not a course
    deployed = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "Ethics",
                                   "--scorm", "1.2", "-o", str(tmp_path / "d.zip"), "--json"])
    other = json.loads(deployed.output)["package_id"]
    refused = runner.invoke(args=["package", "republish", "--package", other, "--content", str(folder)])
    assert refused.exit_code != 0 and "not a remote package" in refused.output
    mismatch = runner.invoke(args=["package", "republish", "--package", package_id, "--content",
                                   str(_write(tmp_path / "a.zip", authoring_zip("2004")))])
    assert mismatch.exit_code != 0 and "not SCORM 1.2" in mismatch.output


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
