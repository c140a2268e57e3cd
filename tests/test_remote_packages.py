"""Remote packages: the thin zip, the content store and its origin, republishing.

The browser journeys (a real LMS runtime relaying to the live server) are in
tests/test_remote_browser.py; the two-origin isolation in tests/test_content_isolation.py.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import zipfile
from urllib.parse import urljoin

import pytest
from conftest import beacon_body
from remote_courses import as_zip, captivate_multi, storyline
from scorm_content import authoring_zip, script_config, validate
from sqlalchemy import func, select

from app import packages
from app.clients import services as client_service
from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import AuditEntry, Client, Event, PackageIssue, RemoteContent

SERVER = "https://track.vendor.example"


@pytest.fixture
def content_base(app) -> str:
    return app.config["CONTENT_URL"]


def build(client, version="1.2", content=None, title="Anti-Bribery", **kwargs):
    data, built = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                         content=content, mode="remote", server_url=SERVER, issued_by="test",
                                         **kwargs)
    return zipfile.ZipFile(io.BytesIO(data)), built


def launcher_config(archive: zipfile.ZipFile) -> dict:
    return script_config(archive, "remote-launcher.js")


def stored() -> RemoteContent:
    db.session.rollback()
    return db.session.scalar(select(RemoteContent))


def open_player(client, content_base, package_id, sco=0):
    """Follow the stable launch address to the current version's player, as the launcher's iframe does."""
    redirect = client.get(f"/{package_id}/launch/{sco}", base_url=content_base, buffered=True)
    assert redirect.status_code == 302 and redirect.headers["Cache-Control"] == "no-store"
    return redirect.headers["Location"], client.get(redirect.headers["Location"], base_url=content_base, buffered=True)


def open_launch(client, content_base, package_id, sco=0):
    """The SCO's launch page, as the player's frame opens it: (its address, the response)."""
    player_location, player = open_player(client, content_base, package_id, sco)
    src = re.search(r'<iframe id="course"[^>]*\ssrc="([^"]+)"', player.get_data(as_text=True)).group(1)
    location = urljoin(player_location, html.unescape(src))
    return location, client.get(location, base_url=content_base, buffered=True)


# --- the thin zip ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_remote_zip_holds_only_the_launcher_and_a_valid_manifest(make_client, version, tmp_path, app):
    client, _ = make_client()
    archive, built = build(client, version)
    assert sorted(archive.namelist()) == sorted(["imsmanifest.xml", *packages.REMOTE_LAUNCHER_FILES])
    assert validate(archive.read("imsmanifest.xml"), version, tmp_path) == []
    package_id = built.issue.package_id
    content = app.config["CONTENT_URL"]
    assert content == "https://localhost:8443"  # development default: PUBLIC_URL with the other loopback name
    assert launcher_config(archive) == {"contentOrigin": content, "scormVersion": version,
                                        "launchUrls": [f"{content}/{package_id}/launch/0"],
                                        "seatUrl": f"{content}/{package_id}/seat",
                                        "limitUrl": f"{content}/{package_id}/limit", "sealed": False}
    assert built.content_url == f"{content}/{package_id}/launch/0"
    # No key, no course file, no app address in the thin zip.
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"ck_" not in everything and b"course.js" not in everything and SERVER.encode() not in everything
    row = stored()
    assert row.package_id == package_id and row.launch_file == "index.html" and row.sco_count == 1
    assert row.beacon_key.startswith("ck_") and row.beacon_key[:8] == built.key_prefix
    index = app.extensions["content_store"].read_version(row.content_version)
    assert set(index["files"]) == {"index.html", "course.css", "course.js"}
    assert row.content_bytes == sum(f["size"] for f in index["files"].values())
    assert db.session.scalar(select(PackageIssue.mode)) == "remote"


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_every_sco_item_is_an_item_of_the_thin_package_launched_with_its_query(make_client, version, tmp_path,
                                                                              client, content_base):
    customer, _ = make_client()
    archive, built = build(customer, version, content=io.BytesIO(as_zip(captivate_multi(version))),
                           title="Lessons")
    manifest = archive.read("imsmanifest.xml")
    assert validate(manifest, version, tmp_path) == []
    for n in range(3):
        assert f'href="index.html?sco={n}"'.encode() in manifest
    assert len(launcher_config(archive)["launchUrls"]) == 3
    assert built.launch_files == ["player.html?lesson=1&mode=intro", "player.html?lesson=2&mode=quiz",
                                  "player.html?lesson=3&mode=summary"]
    row = stored()
    for n, query in enumerate(["lesson=1&mode=intro", "lesson=2&mode=quiz", "lesson=3&mode=summary"]):
        location, page = open_launch(client, content_base, built.issue.package_id, n)
        assert location == f"/{built.issue.package_id}/{row.content_version}/player.html?{query}"
        assert page.status_code == 200 and page.data == captivate_multi(version)["player.html"]
    assert client.get(f"/{built.issue.package_id}/launch/3", base_url=content_base, buffered=True).status_code == 404


def test_remote_package_of_authoring_content_keeps_its_layout(make_client, client, content_base):
    customer, _ = make_client()
    _, built = build(customer, "2004", content=io.BytesIO(authoring_zip("2004")))
    location, page = open_launch(client, content_base, built.issue.package_id)
    assert location.endswith("/course/story.html")
    # The course's files are served as exported: the API and the tracker are in the player, not in them.
    exported = zipfile.ZipFile(io.BytesIO(authoring_zip("2004")))
    assert page.data == exported.read("course/story.html")
    base = location.rsplit("/course/", 1)[0]
    assert client.get(f"{base}/shared/logo.svg", base_url=content_base, buffered=True).mimetype == "image/svg+xml"
    assert client.get(f"{base}/imsmanifest.xml", base_url=content_base, buffered=True).status_code == 200


def test_item_settings_are_carried_and_dropped_sequencing_is_warned(make_client, tmp_path):
    customer, _ = make_client()
    files = captivate_multi("1.2")
    files["imsmanifest.xml"] = files["imsmanifest.xml"].replace(
        b"<title>Lessons 1</title>", b"<title>Lessons 1</title><adlcp:masteryscore>80</adlcp:masteryscore>")
    archive, built = build(customer, "1.2", content=io.BytesIO(as_zip(files)), title="Lessons")
    manifest = archive.read("imsmanifest.xml")
    assert b"<adlcp:masteryscore>80</adlcp:masteryscore>" in manifest
    assert validate(manifest, "1.2", tmp_path) == []
    assert built.warnings == []
    _, built = build(customer, "2004", content=io.BytesIO(authoring_zip("2004")))
    assert any("sequencing" in w for w in built.warnings)


def test_build_warns_in_plain_words_about_what_cannot_work_in_a_frame(make_client, runner, tmp_path):
    customer, _ = make_client()
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "index.html").write_text('<html><head></head><body><a href="next.html" target="_top">Next</a>'
                                       '<img src="http://cdn.example/logo.png"></body></html>')
    (folder / "exit.js").write_text("function leave() { top.location.href = '/'; }")
    result = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "Framed",
                                 "--scorm", "1.2", "--mode", "remote", "--content", str(folder),
                                 "-o", str(tmp_path / "r.zip"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["content_url"].endswith(f"/{data['package_id']}/launch/0")
    assert len(data["warnings"]) == 2
    assert "exit.js (top.location), index.html (target=_top) reach into the LMS's window" in data["warnings"][0]
    assert "plain http://" in data["warnings"][1]
    assert "Warning: exit.js (top.location), index.html (target=_top) reach into the LMS's window" in result.stderr


def test_remote_is_refused_for_a_perpetual_client(make_client):
    client, _ = make_client(licence="perpetual")
    with pytest.raises(packages.PackageError, match="perpetual-licence client gets untracked packages"):
        build(client)
    assert db.session.scalar(select(PackageIssue)) is None


def test_remote_build_without_content_url_is_refused_with_what_to_do(make_client, app):
    client, _ = make_client()
    app.config["CONTENT_URL"] = None  # as in production until CONTENT_URL is set
    with pytest.raises(packages.PackageError, match="remote packages need CONTENT_URL"):
        build(client)
    with pytest.raises(packages.PackageError, match="is the app's own origin"):
        build(client, content_url="https://Track.Vendor.Example:443")
    assert db.session.scalar(select(PackageIssue)) is None


# --- serving ---------------------------------------------------------------------


def test_launch_page_has_the_relay_the_tracker_and_a_policy_for_authoring_tools(make_client, client, app,
                                                                                 content_base):
    customer, _ = make_client(origins=["https://lms.acme.example", "https://lms2.acme.example"])
    _, built = build(customer)
    location, page = open_player(client, content_base, built.issue.package_id)
    assert location.endswith("/scorm-player.html?sco=0")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html_text = page.get_data(as_text=True)
    # The API, then the tracker, then the course's frame: the course finds the API in its parent.
    assert '<script src="scorm-remote-api.js"></script>\n<script src="scorm-usage-tracker.js"></script>' in html_text
    assert html_text.index("scorm-usage-tracker.js") < html_text.index('<iframe id="course"')
    assert 'src="index.html"' in html_text
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://lms.acme.example https://lms2.acme.example" in policy
    assert "script-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:" in policy
    assert f"connect-src 'self' data: blob: {app.config['PUBLIC_URL']}" in policy
    assert "object-src 'none'" in policy and "form-action 'self'" in policy
    assert "X-Frame-Options" not in page.headers and "Set-Cookie" not in page.headers
    assert page.headers["Cache-Control"] == "no-store"
    course_location, course = open_launch(client, content_base, built.issue.package_id)
    assert course.headers["Cache-Control"] == "no-cache" and b"course.js" in course.data
    assert b"scorm-usage-tracker.js" not in course.data
    assert client.get(location.replace("sco=0", "sco=1"), base_url=content_base, buffered=True).status_code == 404

    base = location.rsplit("/", 1)[0]
    tracker = client.get(f"{base}/scorm-usage-tracker.js", base_url=content_base, buffered=True)
    assert tracker.mimetype == "text/javascript"
    config = json.loads(next(line for line in tracker.get_data(as_text=True).splitlines()
                             if "var CONFIG =" in line).split("=", 1)[1].strip().rstrip(";"))
    assert config == {"url": app.config["PUBLIC_URL"] + "/api/v1/beacons", "key": stored().beacon_key,
                      "course": "Anti-Bribery", "packageId": str(built.issue.package_id), "scormVersion": "1.2",
                      "selfOpen": False,  # the placeholder course talks SCORM: it opens its own session
                      "sealed": False}
    assert b"scorm-remote=" in client.get(f"{base}/scorm-remote-api.js", base_url=content_base, buffered=True).data


def test_any_https_lms_may_frame_when_no_origins_are_set(make_client, client, content_base):
    customer, _ = make_client()
    _, built = build(customer)
    _, page = open_launch(client, content_base, built.issue.package_id)
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors 'self' https:")


def test_range_and_conditional_requests_on_course_files(make_client, client, content_base):
    customer, _ = make_client()
    files = storyline("1.2")
    _, built = build(customer, content=io.BytesIO(as_zip(files)))
    location, _ = open_launch(client, content_base, built.issue.package_id)
    video = location.rsplit("/", 1)[0] + "/story_content/video/intro.mp4"
    whole = client.get(video, base_url=content_base, buffered=True)
    assert whole.status_code == 200 and whole.data == files["story_content/video/intro.mp4"]
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.mimetype == "video/mp4"
    etag = whole.headers["ETag"]
    part = client.get(video, base_url=content_base, buffered=True, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == whole.data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(whole.data)}"
    tail = client.get(video, base_url=content_base, buffered=True, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == whole.data[-10:]
    beyond = client.get(video, base_url=content_base, buffered=True, headers={"Range": f"bytes={len(whole.data) + 5}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole.data)}"
    assert client.get(video, base_url=content_base, buffered=True, headers={"If-None-Match": etag}).status_code == 304
    stale = client.get(video, base_url=content_base, buffered=True, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.data == whole.data  # If-Range with an old ETag: the whole file
    assert "immutable" not in whole.headers["Cache-Control"] and "max-age" in whole.headers["Cache-Control"]


def test_unknown_packages_files_and_unsafe_paths_are_404(make_client, client, content_base):
    customer, _ = make_client()
    _, built = build(customer)
    _, other = build(customer, title="Other")
    location, _ = open_launch(client, content_base, built.issue.package_id)
    base = location.rsplit("/", 1)[0]
    version = base.rsplit("/", 1)[1]
    other_version = stored_version(other.issue.package_id)
    deployed, _ = packages.package_bytes(db.session, client=customer, course_title="D", scorm_version="1.2",
                                         server_url=SERVER, issued_by="test")
    deployed_id = db.session.scalars(select(PackageIssue.package_id).where(PackageIssue.mode == "deployed")).one()
    for url in (f"{base}/missing.html", f"{base}/../index.html", f"{base}/%2e%2e/index.html",
                f"{base}/%2E%2E%2Findex.html", f"{base}/a\\b", f"{base}/..%2f..%2fetc/passwd",
                f"{base}/%00.html", f"/{built.issue.package_id}/{'0' * 32}/index.html",
                f"/{built.issue.package_id}/{other_version}/index.html",  # another package's version
                f"/{built.issue.package_id}/../../etc/passwd", f"/{built.issue.package_id}/launch/x",
                f"/00000000-0000-0000-0000-000000000000/{version}/index.html", f"/{deployed_id}/launch/0",
                "/not-a-uuid/launch/0", "/"):
        assert client.get(url, base_url=content_base, buffered=True).status_code == 404, url
    customer.active = False
    db.session.commit()
    assert client.get(f"{base}/index.html", base_url=content_base, buffered=True).status_code == 404
    assert client.get(f"/{built.issue.package_id}/launch/0", base_url=content_base, buffered=True).status_code == 404


def stored_version(package_id) -> str:
    return db.session.scalar(select(RemoteContent.content_version).where(RemoteContent.package_id == package_id))


def test_each_origin_answers_404_for_the_others_addresses_and_content_sets_no_cookie(
        make_client, make_staff, client, login, content_base):
    customer, _ = make_client()
    _, built = build(customer)
    location, _ = open_launch(client, content_base, built.issue.package_id)
    app_base = "https://127.0.0.1:8443"
    for base in (app_base, "https://localhost"):  # PUBLIC_URL's host, and any other name of the app
        assert client.get(location, base_url=base, buffered=True).status_code == 404
        assert client.get(f"/{built.issue.package_id}/launch/0", base_url=base).status_code == 404
    login(make_staff("admin"))
    for path in ("/login", "/healthz", "/admin/", "/billing/", "/api/openapi.json", "/static/app.css"):
        answer = client.get(path, base_url=content_base, buffered=True)
        assert answer.status_code == 404, path
        assert "Set-Cookie" not in answer.headers, path
    assert client.post("/api/v1/beacons", base_url=content_base, json={}).status_code == 404
    assert client.post("/login", base_url=content_base, data={"email": "x"}).status_code == 404
    assert client.get("/healthz", base_url=app_base).status_code == 200


def test_beacon_from_the_content_origin_passes_the_lms_origin_check(make_client, client, content_base):
    customer, _ = make_client(origins=["https://lms.acme.example"])
    _, built = build(customer)
    key = stored().beacon_key
    body = beacon_body(key, package=str(built.issue.package_id))
    assert client.post("/api/v1/beacons", json=body, headers={"Origin": "https://elsewhere.example"}).status_code == 403
    body = beacon_body(key, package=str(built.issue.package_id))
    assert client.post("/api/v1/beacons", json=body, headers={"Origin": content_base}).status_code == 204


# --- licence limits: the launcher's seat check -------------------------------------


@pytest.mark.parametrize("anonymised", [False, True])
def test_seat_check_refuses_only_new_learners_of_a_client_that_blocks_at_its_limit(make_client, client,
                                                                                    content_base, anonymised):
    lms = "https://lms.acme.example"
    customer, _ = make_client(origins=[lms], anonymised=anonymised)
    _, built = build(customer)
    package_id = built.issue.package_id
    today = dt.datetime.now(dt.UTC).date()
    term = licence_terms.add_term(db.session, customer, actor="test", starts_on=today - dt.timedelta(days=30),
                                  ends_on=today + dt.timedelta(days=365), seat_limit=1, at_limit="block")
    key = stored().beacon_key

    def ask(student_id, **headers):
        return client.post(f"/{package_id}/seat", base_url=content_base, data=json.dumps({"student_id": student_id}),
                           headers={"Content-Type": "text/plain", "Origin": lms, **headers})

    # Ann takes the one seat: her launch's beacon carries the grant her seat check gave.
    grant = ask("Ann@Example.com").json["grant"]
    assert client.post("/api/v1/beacons", json=beacon_body(key, student_id="Ann@Example.com", grant=grant),
                       headers={"Origin": lms}).status_code == 204
    events = db.session.scalar(select(func.count()).select_from(Event))
    assert events == 1

    answer = ask("  ann@example.COM ")  # the LMS's own shape of a learner already counted: same learner
    assert answer.status_code == 200 and answer.json["allowed"] is True and answer.json["grant"]
    assert answer.headers["Access-Control-Allow-Origin"] == lms and "Set-Cookie" not in answer.headers
    assert answer.headers["Cache-Control"] == "no-store"
    assert ask("bob@example.com").json == {"allowed": False}, "a new learner past the limit"
    other = ask("bob@example.com", Origin="https://other.example")
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    assert "allowed" not in other.json

    for bad in (b"", b"{", b"[1]", b'"x"', b'{"student_id": ""}', b'{"student_id": 7}', b'{"student_id": {}}',
                rb'{"student_id": "a\u0000b"}', b'{"id": "x"}', b"[" * 1000, b"x" * 5000):
        refused = client.post(f"/{package_id}/seat", base_url=content_base, data=bad,
                              headers={"Content-Type": "text/plain", "Origin": lms})
        assert refused.status_code in (400, 413), bad
    # A seat check records nothing, and the app origin does not answer it.
    assert db.session.scalar(select(func.count()).select_from(Event)) == events
    assert client.post(f"/{package_id}/seat", json={"student_id": "bob"}).status_code == 404

    term.at_limit = "record"  # record and flag: everyone opens the course, and no grant is needed
    db.session.commit()
    assert ask("bob@example.com").json == {"allowed": True}
    if anonymised:  # pseudonyms shredded: the client records nobody, so no seat is guarded (and no 500)
        term.at_limit = "block"
        shredded = db.session.get(Client, customer.id)
        client_service.shred_pseudonyms(db.session, shredded, actor="test")
        assert ask("bob@example.com").status_code == 404  # shredding deactivates the client
        shredded.active = True  # reactivated by hand: still no salt
        db.session.commit()
        answer = ask("bob@example.com")
        assert answer.status_code == 200 and answer.json["allowed"] is True


def test_limit_page_is_polite_and_lives_on_the_content_origin(make_client, client, content_base):
    customer, _ = make_client(name="Acme Learning")
    _, built = build(customer)
    page = client.get(f"/{built.issue.package_id}/limit", base_url=content_base)
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    html = page.get_data(as_text=True)
    assert "Acme Learning has used every seat" in html and "contact your training administrator" in html
    assert "frame-ancestors" in page.headers["Content-Security-Policy"]
    assert client.get(f"/{built.issue.package_id}/limit").status_code == 404


# --- republishing ----------------------------------------------------------------


def test_cli_builds_remote_then_republish_replaces_the_content(runner, make_client, client, tmp_path, content_base):
    customer, _ = make_client()
    target = tmp_path / "remote.zip"
    result = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "Ethics",
                                 "--scorm", "1.2", "--mode", "remote", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["mode"] == "remote" and "index.html" in zipfile.ZipFile(target).namelist()
    assert data["content_url"] == f"{content_base}/{data['package_id']}/launch/0"
    package_id = data["package_id"]
    first, page = open_launch(client, content_base, package_id)
    assert b"course.js" in page.data

    folder = tmp_path / "v2"
    folder.mkdir()
    (folder / "index.html").write_text("<!DOCTYPE html><html><head><title>v2</title></head>"
                                       "<body>Version 2</body></html>")
    result = runner.invoke(args=["package", "republish", "--package", package_id, "--content", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    second, page = open_launch(client, content_base, package_id)
    assert second != first and "Version 2" in page.get_data(as_text=True)
    assert client.get(second.rsplit("/", 1)[0] + "/course.js", base_url=content_base, buffered=True).status_code == 404
    assert client.get(first, base_url=content_base, buffered=True).status_code == 200  # the old version is still there
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "package.republish"))
    assert entry.actor == "cli" and entry.after["package_id"] == package_id
    assert entry.after["version"] == json.loads(result.output)["version"] != entry.before["version"]

    wrong = runner.invoke(args=["package", "republish", "--package", package_id,
                                "--content", str(tmp_path / "remote.zip")])
    assert wrong.exit_code != 0 and "already holds remote-launcher.js" in wrong.output  # the thin zip is no course
    deployed = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "Ethics",
                                   "--scorm", "1.2", "-o", str(tmp_path / "d.zip"), "--json"])
    other = json.loads(deployed.output)["package_id"]
    refused = runner.invoke(args=["package", "republish", "--package", other, "--content", str(folder)])
    assert refused.exit_code != 0 and "not a remote package" in refused.output
    mismatch = runner.invoke(args=["package", "republish", "--package", package_id, "--content",
                                   str(_write(tmp_path / "a.zip", authoring_zip("2004")))])
    assert mismatch.exit_code != 0 and "not SCORM 1.2" in mismatch.output
    three = runner.invoke(args=["package", "republish", "--package", package_id, "--content",
                                str(_write(tmp_path / "m.zip", as_zip(captivate_multi("1.2"))))])
    assert three.exit_code != 0 and "has 1 SCO item(s) and the new content has 3" in three.output
    assert open_launch(client, content_base, package_id)[0] == second  # refusals changed nothing


def test_republish_while_an_old_version_is_still_being_read(make_client, client, content_base):
    customer, _ = make_client()
    old = storyline("1.2", marker="v1")
    _, built = build(customer, content=io.BytesIO(as_zip(old)))
    first, _ = open_launch(client, content_base, built.issue.package_id)
    video = first.rsplit("/", 1)[0] + "/story_content/video/intro.mp4"
    reading = client.get(video, base_url=content_base, buffered=False)
    chunks = iter(reading.response)
    received = next(chunks)

    new = storyline("1.2", marker="v2")
    new["story_content/video/intro.mp4"] = b"\x00" * len(old["story_content/video/intro.mp4"])
    packages.republish(db.session, package_id=built.issue.package_id, content=io.BytesIO(as_zip(new)), actor="t")
    second, page = open_launch(client, content_base, built.issue.package_id)
    assert second != first and b"Storyline course v2" in page.data

    received += b"".join(chunks)
    reading.close()
    assert received == old["story_content/video/intro.mp4"]
    assert client.get(second.rsplit("/", 1)[0] + "/story_content/video/intro.mp4",
                      base_url=content_base, buffered=True).data == new["story_content/video/intro.mp4"]


def test_store_keeps_each_file_once_and_writes_atomically(make_client, app):
    customer, _ = make_client()
    build(customer, content=io.BytesIO(as_zip(storyline("1.2"))))
    build(customer, content=io.BytesIO(as_zip(storyline("1.2"))), title="Copy")
    root = app.extensions["content_store"].root
    blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    # Two packages of one course: each file body stored once (the launch page differs only by nothing here).
    assert len(blobs) == len(storyline("1.2"))
    assert not [p for p in root.rglob(".tmp-*")] and not list((root / "blobs" / "incoming").iterdir())
    assert len(list((root / "versions").iterdir())) == 2  # one version per package


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_version_published_before_the_player_still_opens_its_own_launch_page(make_client, client, app,
                                                                                content_base):
    # Such a version's launch pages hold the relay themselves (layout 1): they are opened directly, as before.
    customer, _ = make_client()
    _, built = build(customer)
    store = app.extensions["content_store"]
    row = stored()
    old_index = {"package": str(built.issue.package_id), "scos": [{"title": "Anti-Bribery", "href": "index.html"}]}
    page = b"<html><head><script src=\"scorm-remote-api.js\"></script></head><body>old</body></html>"
    version = store.put_version(old_index, [("index.html", lambda: io.BytesIO(page))])
    row.content_version = version
    db.session.commit()
    redirect = client.get(f"/{built.issue.package_id}/launch/0", base_url=content_base, buffered=True)
    assert redirect.headers["Location"] == f"/{built.issue.package_id}/{version}/index.html"
    # Its tracker never opens a session of its own, and it has no player page.
    base = f"/{built.issue.package_id}/{version}"
    assert b'"selfOpen": false' in client.get(f"{base}/scorm-usage-tracker.js", base_url=content_base,
                                              buffered=True).data
    assert client.get(f"{base}/scorm-player.html?sco=0", base_url=content_base, buffered=True).status_code == 404
