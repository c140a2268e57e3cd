"""cmi5 and Tin Can packages: built from real exports like SCORM ones, and bad course structures refused.

The builder reads ``cmi5.xml`` (AUs in blocks, ``url``, ``launchMethod``, ``moveOn``) and
``tincan.xml`` (activities with ``<launch>``), keeps them byte for byte and adds the tracker,
in its xAPI mode, to each AU's launch page. What the tracker does in a browser is in
``test_xapi_browser.py``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from conftest import beacon_body
from real_courses import REAL_COURSES
from scorm_content import script_config
from sqlalchemy import select

from app import packages
from app.extensions import db
from app.models import Event, PackageIssue, RemoteContent

# one_database: the cmi5 and Tin Can package builder.
pytestmark = pytest.mark.one_database

SERVER = "https://track.vendor.example"
RISE_CMI5 = REAL_COURSES / "rise360-cmi5.zip"
ISPRING_TINCAN = REAL_COURSES / "ispring10.1-tincan-xapi.zip"
CMI5_NS = "https://w3id.org/xapi/profiles/cmi5/v1/CourseStructure.xsd"


def build(client, content, version=None, title="Safety", **kwargs):
    data, built = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                         content=content, server_url=SERVER, issued_by="csm@vendor.example",
                                         **kwargs)
    return zipfile.ZipFile(io.BytesIO(data)), built


def cmi5_xml(aus: str, doctype: str = "") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>{doctype}
<courseStructure xmlns="{CMI5_NS}">
  <course id="https://example.com/course"><title><langstring lang="en">C</langstring></title></course>
  {aus}
</courseStructure>"""


def au(url: str | None = "au1/index.html", **attrs) -> str:
    extra = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    inner = f"<url>{url}</url>" if url is not None else ""
    return (f'<au id="https://example.com/au/{abs(hash(url)) % 1000}" {extra}>'
            f'<title><langstring lang="en">AU</langstring></title>{inner}</au>')


def export(files: dict[str, str | bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    buffer.seek(0)
    return buffer


PAGE = "<!DOCTYPE html><html><head><title>AU</title></head><body>AU</body></html>"


@pytest.mark.parametrize("content,standard,structure,launch", [
    (RISE_CMI5, "cmi5", "cmi5.xml", "scormdriver/indexAPI.html"),
    (ISPRING_TINCAN, "tincan", "tincan.xml", "res/index.html"),
], ids=["rise360-cmi5", "ispring10.1-tincan"])
def test_real_export_is_built_as_exported_with_the_tracker_in_its_launch_page(
        make_client, client, content, standard, structure, launch):
    customer, _ = make_client()
    archive, built = build(customer, content)
    with zipfile.ZipFile(content) as original:
        originals = {name: original.read(name) for name in original.namelist() if not name.endswith("/")}
    names = set(archive.namelist())
    assert "imsmanifest.xml" not in names
    assert names == set(originals) | {packages.TRACKER_FILE}
    assert archive.read(structure) == originals[structure]  # the course structure byte for byte
    for name, body in originals.items():
        if name != launch:
            assert archive.read(name) == body, name
    page = archive.read(launch).decode("utf-8")
    assert '<script src="../scorm-usage-tracker.js"></script>' in page
    assert page.replace('\n<script src="../scorm-usage-tracker.js"></script>', "", 1).encode() == originals[launch]

    config = script_config(archive, packages.TRACKER_FILE)
    assert config["scormVersion"] == standard and config["selfOpen"] is False
    assert config["packageId"] == str(built.issue.package_id) and config["activities"]
    assert built.scorm_version == standard and built.launch_files == [launch]
    assert built.filename == f"safety-{standard}.zip"
    issue = db.session.scalar(select(PackageIssue))
    assert (issue.scorm_version, issue.mode) == (standard, "deployed")
    # Its key and format are accepted by the beacon endpoint like a SCORM package's.
    response = client.post("/api/v1/beacons", json=beacon_body(config["key"], scorm_version=standard,
                                                               package=config["packageId"]))
    assert response.status_code == 204
    assert db.session.scalar(select(Event.scorm_version)) == standard


def test_perpetual_client_gets_the_export_untracked(make_client):
    customer, _ = make_client(licence="perpetual")
    archive, built = build(customer, RISE_CMI5)
    with zipfile.ZipFile(RISE_CMI5) as original:
        expected = {name: original.read(name) for name in original.namelist() if not name.endswith("/")}
    assert {name: archive.read(name) for name in archive.namelist()} == expected
    assert built.mode == "untracked" and built.key_prefix is None


def test_cli_builds_a_cmi5_export_without_scorm_version(app, make_client, tmp_path):
    import json

    customer, _ = make_client()
    out = tmp_path / "course.zip"
    result = app.test_cli_runner().invoke(args=["package", "build", "--client", customer.slug, "--course", "Rise",
                                                "--content", str(RISE_CMI5), "-o", str(out), "--json",
                                                "--server-url", SERVER])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["scorm_version"] == "cmi5" and data["launch_files"] == ["scormdriver/indexAPI.html"]
    with zipfile.ZipFile(out) as archive:
        assert "cmi5.xml" in archive.namelist()
    # --scorm with a cmi5 export: refused, saying why.
    result = app.test_cli_runner().invoke(args=["package", "build", "--client", customer.slug, "--course", "Rise",
                                                "--scorm", "1.2", "--content", str(RISE_CMI5), "-o", str(out)])
    assert result.exit_code != 0 and "without a SCORM version" in result.output


def test_blocks_and_several_aus_each_get_the_tracker(make_client):
    customer, _ = make_client()
    structure = cmi5_xml(f"""<block id="https://example.com/b1"><title><langstring>B</langstring></title>
      {au("one/index.html", moveOn="Completed")}
      <block id="https://example.com/b2"><title><langstring>B2</langstring></title>
        {au("two/start.html?lang=en", launchMethod="OwnWindow")}</block></block>""")
    archive, built = build(customer, export({"cmi5.xml": structure, "one/index.html": PAGE,
                                             "two/start.html": PAGE, "two/other.html": PAGE}))
    assert built.launch_files == ["one/index.html", "two/start.html"]
    for name in built.launch_files:
        assert "scorm-usage-tracker.js" in archive.read(name).decode()
    assert "scorm-usage-tracker.js" not in archive.read("two/other.html").decode()
    units = packages.read_cmi5(structure.encode())
    assert [(u.launch, u.query, u.launch_method, u.move_on) for u in units] == [
        ("one/index.html", "", "AnyWindow", "Completed"), ("two/start.html", "lang=en", "OwnWindow",
                                                           "NotApplicable")]


@pytest.mark.parametrize("files,reason", [
    ({"cmi5.xml": cmi5_xml(au(None)), "index.html": PAGE}, "has no <url>"),
    ({"cmi5.xml": cmi5_xml(au("   ")), "index.html": PAGE}, "has no <url>"),
    ({"cmi5.xml": cmi5_xml(au("https://cdn.example.com/au.html")), "index.html": PAGE},
     "a page outside the package"),
    ({"cmi5.xml": cmi5_xml(au("http://cdn.example.com/au.html")), "index.html": PAGE}, "must be https://"),
    ({"cmi5.xml": cmi5_xml(au("../outside.html")), "index.html": PAGE}, "outside the package"),
    ({"cmi5.xml": cmi5_xml(au("/etc/passwd")), "index.html": PAGE}, "outside the package"),
    ({"cmi5.xml": cmi5_xml(au("missing.html")), "index.html": PAGE}, "'missing.html', which is not in the content"),
    ({"cmi5.xml": cmi5_xml(au("video.mp4")), "video.mp4": b"\0"}, "not an HTML page"),
    ({"cmi5.xml": cmi5_xml(au("index.html"), '<!DOCTYPE x [<!ENTITY e "boom">]>'), "index.html": PAGE},
     "DOCTYPE or entities"),
    ({"cmi5.xml": cmi5_xml(au("index.html"), '<!DOCTYPE courseStructure SYSTEM "http://evil/x.dtd">'),
      "index.html": PAGE}, "DOCTYPE or entities"),
    ({"cmi5.xml": ("<!--" + "x" * 5000 + "-->" + cmi5_xml(au("index.html"), '<!DOCTYPE x [<!ENTITY e "b">]>')
                   .split("?>", 1)[1]), "index.html": PAGE}, "DOCTYPE or entities"),
    ({"cmi5.xml": cmi5_xml(au("index.html"), '<!DOCTYPE x [<!ENTITY e "b">]>').replace('"utf-8"', '"utf-16"')
      .encode("utf-16"), "index.html": PAGE}, "DOCTYPE or entities"),
    ({"cmi5.xml": "<courseStructure><au id='x'><url>index.html", "index.html": PAGE}, "not well-formed"),
    ({"cmi5.xml": "<manifest/>", "index.html": PAGE}, "no <courseStructure> root"),
    ({"cmi5.xml": cmi5_xml(""), "index.html": PAGE}, "lists no AU"),
    ({"cmi5.xml": cmi5_xml(au("index.html", moveOn="Whenever")), "index.html": PAGE}, "moveOn 'Whenever'"),
    ({"cmi5.xml": cmi5_xml(au("index.html", launchMethod="Popup")), "index.html": PAGE}, "launchMethod 'Popup'"),
    ({"cmi5.xml": cmi5_xml('<au><url>index.html</url></au>'), "index.html": PAGE}, "has no id"),
    ({"tincan.xml": "<tincan><activities><activity id='a'/></activities></tincan>", "index.html": PAGE},
     "no activity with a <launch>"),
    ({"tincan.xml": "<tincan><activities><activity id='a'><launch>../x.html</launch></activity></activities>"
                    "</tincan>", "index.html": PAGE}, "outside the package"),
    ({"tincan.xml": "<!DOCTYPE tincan><tincan/>", "index.html": PAGE}, "DOCTYPE or entities"),
    ({"course/cmi5.xml": cmi5_xml(au("index.html"))}, "found one in course/"),
], ids=["no-url", "blank-url", "absolute-url-deployed", "http-url", "dotdot", "absolute-path", "missing-file",
        "not-html", "entity", "external-dtd", "doctype-after-4-kb", "doctype-in-utf-16", "broken-xml", "wrong-root", "no-au", "bad-moveon",
        "bad-launchmethod", "no-id", "tincan-no-launch", "tincan-dotdot", "tincan-doctype", "nested"])
def test_bad_course_structures_are_refused_with_a_clear_reason(make_client, files, reason):
    customer, _ = make_client()
    with pytest.raises(packages.PackageError, match=reason.replace("(", r"\(").replace("?", r"\?")):
        build(customer, export(files))
    assert db.session.scalar(select(PackageIssue)) is None  # nothing recorded


def test_scorm_version_is_still_needed_for_scorm_and_plain_content(make_client):
    customer, _ = make_client()
    with pytest.raises(packages.PackageError, match="say which SCORM version"):
        build(customer, export({"index.html": PAGE}))
    with pytest.raises(packages.PackageError, match="needs a SCORM version"):
        build(customer, None)


# --- remote cmi5: the tool's cmi5.xml with absolute AU urls, the course on the content origin ---


def remote(client, content, **kwargs):
    return build(client, content, mode="remote", **kwargs)


def launch_query(actor: dict | str) -> str:
    from urllib.parse import quote, urlencode

    return urlencode({"endpoint": "https://lms.acme.example/lrs/", "fetch": "https://lms.acme.example/fetch/t1",
                      "actor": actor if isinstance(actor, str) else json.dumps(actor),
                      "registration": "760e3480-ba55-4991-94b0-01820dbd23a2",
                      "activityId": "https://example.com/au/1"}, quote_via=quote)


ACTOR = {"objectType": "Agent", "account": {"homePage": "https://lms.acme.example", "name": "jane-0042"},
         "name": "Doe, Jane"}


def test_remote_cmi5_package_is_the_tools_structure_with_absolute_au_urls(make_client, app):
    customer, _ = make_client()
    archive, built = remote(customer, RISE_CMI5)
    package_id, content = built.issue.package_id, app.config["CONTENT_URL"]
    assert archive.namelist() == ["cmi5.xml"]  # no course, no key, no launcher: the LMS opens our origin
    with zipfile.ZipFile(RISE_CMI5) as original:
        exported = original.read("cmi5.xml")
    rewritten = archive.read("cmi5.xml")
    unit = packages.read_cmi5(exported)[0]
    assert [u.url for u in packages.read_cmi5(rewritten)] == [f"{content}/{package_id}/launch/0"]
    # Every other byte as the tool wrote it: ids, moveOn, launchMethod, objectives, titles.
    assert rewritten == exported.replace(unit.url.encode(), f"{content}/{package_id}/launch/0".encode())
    assert built.content_url == f"{content}/{package_id}/launch/0" and built.scorm_version == "cmi5"
    assert built.mode == "remote" and built.launch_files == ["scormdriver/indexAPI.html"] and built.warnings == []
    db.session.rollback()
    row = db.session.scalar(select(RemoteContent))
    assert row.package_id == package_id and row.sco_count == 1 and row.launch_file == "scormdriver/indexAPI.html"
    index = app.extensions["content_store"].read_version(row.content_version)
    assert index["standard"] == "cmi5" and index["activities"] == [unit.id]
    with zipfile.ZipFile(RISE_CMI5) as original:
        assert set(index["files"]) == {n for n in original.namelist() if not n.endswith("/")}
    assert b"ck_" not in rewritten and SERVER.encode() not in rewritten


def test_remote_cmi5_launch_passes_the_lms_parameters_to_the_au_page_with_the_tracker(make_client, client, app):
    customer, _ = make_client(origins=["https://lms.acme.example"])
    structure = cmi5_xml(f"""{au("one/index.html")}<block id="https://example.com/b"><title><langstring>B
      </langstring></title>{au("two/start.html?lang=en", launchMethod="OwnWindow")}</block>""")
    archive, built = remote(customer, export({"cmi5.xml": structure, "one/index.html": PAGE,
                                              "two/start.html": PAGE, "two/other.html": PAGE}))
    package_id, content = built.issue.package_id, app.config["CONTENT_URL"]
    assert [u.url for u in packages.read_cmi5(archive.read("cmi5.xml"))] == [
        f"{content}/{package_id}/launch/0", f"{content}/{package_id}/launch/1"]
    version = db.session.scalar(select(RemoteContent.content_version))
    query = launch_query(ACTOR)
    for n, page, own in ((0, "one/index.html", ""), (1, "two/start.html", "lang=en&")):
        launch = client.get(f"/{package_id}/launch/{n}?{query}", base_url=content, buffered=True)
        assert launch.status_code == 302 and launch.headers["Cache-Control"] == "no-store"
        assert launch.headers["Location"] == f"/{package_id}/{version}/{page}?{own}{query}"  # as the LMS sent them
        opened = client.get(launch.headers["Location"], base_url=content, buffered=True)
        assert opened.status_code == 200 and opened.headers["Cache-Control"] == "no-store"
        assert opened.headers["Referrer-Policy"] == "no-referrer"
        body = opened.get_data(as_text=True)
        assert f'<head>\n<script src="../{packages.TRACKER_FILE}"></script>' in body and "<body>AU</body>" in body
        connect = next(d for d in opened.headers["Content-Security-Policy"].split("; ")
                       if d.startswith("connect-src"))
        assert " https: " in connect + " " and "https://lms.acme.example" in connect  # the LMS's LRS
        assert "Set-Cookie" not in opened.headers
    other = client.get(f"/{package_id}/{version}/two/other.html", base_url=content, buffered=True)
    assert other.data == PAGE.encode()  # only AU pages get the tracker
    tracker = script_config_text(client.get(f"/{package_id}/{version}/{packages.TRACKER_FILE}", base_url=content,
                                            buffered=True).get_data(as_text=True))
    assert tracker["scormVersion"] == "cmi5" and tracker["remote"] is True
    assert tracker["activities"] == [u.id for u in packages.read_cmi5(structure.encode())]
    assert tracker["key"].startswith("ck_") and tracker["packageId"] == str(package_id)
    # The version has no SCORM player.
    assert client.get(f"/{package_id}/{version}/{packages.PLAYER_FILE}?sco=0", base_url=content,
                      buffered=True).status_code == 404


def script_config_text(source: str) -> dict:
    import re

    return json.loads(re.search(r"var CONFIG = (\{.*?\});\n", source).group(1))


def test_remote_cmi5_republish_shows_at_the_next_launch(make_client, client, app):
    customer, _ = make_client()
    structure = cmi5_xml(au("index.html"))
    _, built = remote(customer, export({"cmi5.xml": structure, "index.html": PAGE}))
    package_id, content = built.issue.package_id, app.config["CONTENT_URL"]
    first = client.get(f"/{package_id}/launch/0?{launch_query(ACTOR)}", base_url=content).headers["Location"]
    packages.republish(db.session, package_id=package_id, actor="csm@vendor.example",
                       content=export({"cmi5.xml": structure, "index.html": PAGE.replace("AU<", "AU v2<")}))
    second = client.get(f"/{package_id}/launch/0?{launch_query(ACTOR)}", base_url=content).headers["Location"]
    assert second != first
    assert "AU v2" in client.get(second, base_url=content, buffered=True).get_data(as_text=True)
    version = db.session.scalar(select(RemoteContent.content_version))
    # Another number of AUs, or another format: refused, the published version kept.
    for files, reason in (
            ({"cmi5.xml": cmi5_xml(au("index.html") + au("b.html")), "index.html": PAGE, "b.html": PAGE},
             "has 1 AU"),
            ({"tincan.xml": "<tincan><activities><activity id='a'><launch>index.html</launch></activity>"
                            "</activities></tincan>", "index.html": PAGE}, "a cmi5 package"),
            ({"cmi5.xml": cmi5_xml(""), "index.html": PAGE}, "lists no AU")):
        with pytest.raises(packages.PackageError, match=reason):
            packages.republish(db.session, package_id=package_id, actor="csm@vendor.example", content=export(files))
        assert db.session.scalar(select(RemoteContent.content_version)) == version


@pytest.mark.parametrize("files,kwargs,reason", [
    ({"cmi5.xml": cmi5_xml(""), "index.html": PAGE}, {}, "lists no AU"),
    ({"cmi5.xml": cmi5_xml(au(None)), "index.html": PAGE}, {}, "has no <url>"),
    ({"cmi5.xml": cmi5_xml(au("https://cdn.example.com/au.html")), "index.html": PAGE}, {},
     "a page outside the package"),
    ({"cmi5.xml": cmi5_xml(au("missing.html")), "index.html": PAGE}, {}, "not in the content"),
    ({"cmi5.xml": cmi5_xml(au("index.html")).encode("utf-16").replace(b"u\x00t\x00f\x00-\x008\x00",
                                                                     b"u\x00t\x00f\x00-\x001\x006\x00"),
      "index.html": PAGE}, {}, "not UTF-8"),
    ({"tincan.xml": "<tincan><activities><activity id='a'><launch>index.html</launch></activity></activities>"
                    "</tincan>", "index.html": PAGE}, {}, "remote xAPI \\(Tin Can\\) package cannot be built"),
    ({"cmi5.xml": cmi5_xml(au("index.html")), "index.html": PAGE}, {"sealed": True}, "sealed client"),
    ({"cmi5.xml": cmi5_xml(au("index.html")), "index.html": PAGE}, {"licence": "perpetual"}, "perpetual"),
], ids=["no-au", "au-without-url", "absolute-url", "missing-page", "utf-16", "tincan", "sealed", "perpetual"])
def test_bad_remote_cmi5_builds_are_refused_and_nothing_is_kept(make_client, app, files, kwargs, reason):
    customer, _ = make_client(**kwargs)
    with pytest.raises(packages.PackageError, match=reason):
        remote(customer, export(files))
    db.session.rollback()
    assert db.session.scalar(select(PackageIssue)) is None and db.session.scalar(select(RemoteContent)) is None
    store = Path(app.config["CONTENT_DIR"])
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_remote_cmi5_of_a_blocking_licence_gives_a_seat_grant_or_the_limit_page(make_client, client, app):
    from test_seat_grants import blocking_term

    customer, _ = make_client(origins=["https://lms.acme.example"], anonymised=True)
    _, built = remote(customer, export({"cmi5.xml": cmi5_xml(au("index.html")), "index.html": PAGE}))
    package_id, content = built.issue.package_id, app.config["CONTENT_URL"]
    key = db.session.scalar(select(RemoteContent.beacon_key))
    blocking_term(customer, seats=1)
    version = db.session.scalar(select(RemoteContent.content_version))
    # Under the limit: a grant for the learner the actor names, which the tracker's beacons carry.
    launch = client.get(f"/{package_id}/launch/0?{launch_query(ACTOR)}", base_url=content)
    assert launch.status_code == 302
    grant = launch.headers["Location"].split("/g/", 1)[1].split("/", 1)[0]
    assert launch.headers["Location"].startswith(f"/{package_id}/g/{grant}/{version}/index.html?endpoint=")
    assert "jane-0042" not in grant
    page = client.get(launch.headers["Location"], base_url=content, buffered=True)
    assert page.status_code == 200 and packages.TRACKER_FILE in page.get_data(as_text=True)
    tracker = client.get(f"/{package_id}/g/{grant}/{version}/{packages.TRACKER_FILE}", base_url=content,
                         buffered=True).get_data(as_text=True)
    assert script_config_text(tracker)["grant"] == grant
    assert client.post("/api/v1/beacons", json=beacon_body(key, student_id="jane-0042", grant=grant),
                       headers={"Origin": "https://lms.acme.example"}).status_code == 204
    # At the limit: the same learner opens the course again; a new one gets the limit page (403), and
    # an actor that names nobody does too. Without a grant no file of the course is served.
    assert client.get(f"/{package_id}/launch/0?{launch_query(ACTOR)}", base_url=content).status_code == 302
    other = {**ACTOR, "account": {"homePage": "https://lms.acme.example", "name": "new-0007"}}
    for actor in (other, "not json", {"objectType": "Agent"}):
        refused = client.get(f"/{package_id}/launch/0?{launch_query(actor)}", base_url=content, buffered=True)
        assert refused.status_code == 403 and "Location" not in refused.headers
        assert "new-0007" not in refused.get_data(as_text=True)
    assert client.get(f"/{package_id}/{version}/index.html", base_url=content, buffered=True).status_code == 403


def test_admin_builds_a_cmi5_export_with_the_format_from_the_content(client, make_client, make_staff, login):
    from conftest import csrf_token_from

    login(make_staff("csm"))
    customer, _ = make_client()
    url = f"/admin/clients/{customer.slug}/packages"
    page = client.get(url).get_data(as_text=True)
    assert "cmi5 or xAPI (Tin Can)" in page
    response = client.post(url, data={"csrf_token": csrf_token_from(page), "course_title": "Rise", "mode": "deployed",
                                      "scorm_version": "content", "content": (export({"cmi5.xml": cmi5_xml(au("au/index.html")), "au/index.html": PAGE}), "au.zip")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "-rise-cmi5.zip" in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert "cmi5.xml" in archive.namelist() and packages.TRACKER_FILE in archive.namelist()
    db.session.rollback()
    assert db.session.scalar(select(PackageIssue.scorm_version)) == "cmi5"
    listing = client.get(url).get_data(as_text=True)
    assert "<td>cmi5</td>" in listing
    # SCORM 1.2 chosen for a cmi5 export: back to the form with the reason, nothing issued.
    response = client.post(url, data={"csrf_token": csrf_token_from(listing), "course_title": "Rise 2",
                                      "mode": "deployed", "scorm_version": "1.2",
                                      "content": (export({"cmi5.xml": cmi5_xml(au("au/index.html")), "au/index.html": PAGE}), "au.zip")},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "without a SCORM version" in response.get_data(as_text=True)


def test_cli_and_admin_build_a_remote_cmi5_package(app, client, make_client, make_staff, login, tmp_path):
    from conftest import csrf_token_from

    customer, _ = make_client()
    out = tmp_path / "remote.zip"
    result = app.test_cli_runner().invoke(args=["package", "build", "--client", customer.slug, "--course", "Rise",
                                                "--content", str(RISE_CMI5), "--mode", "remote", "-o", str(out),
                                                "--json", "--server-url", SERVER])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["scorm_version"] == "cmi5" and data["mode"] == "remote" and data["warnings"] == []
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["cmi5.xml"]
        assert [u.url for u in packages.read_cmi5(archive.read("cmi5.xml"))] == [data["content_url"]]
    # Tin Can remote: the one-line reason, exit code 1, nothing recorded.
    result = app.test_cli_runner().invoke(args=["package", "build", "--client", customer.slug, "--course", "Spring",
                                                "--content", str(ISPRING_TINCAN), "--mode", "remote", "-o",
                                                str(tmp_path / "t.zip"), "--server-url", SERVER])
    assert result.exit_code == 1 and "remote xAPI (Tin Can) package cannot be built" in result.output

    login(make_staff("csm"))
    url = f"/admin/clients/{customer.slug}/packages"
    page = client.get(url).get_data(as_text=True)
    response = client.post(url, data={"csrf_token": csrf_token_from(page), "course_title": "Rise", "mode": "remote",
                                      "scorm_version": "content",
                                      "content": (export({"cmi5.xml": cmi5_xml(au("au/index.html")),
                                                          "au/index.html": PAGE}), "au.zip")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == ["cmi5.xml"]
    db.session.rollback()
    issues = db.session.scalars(select(PackageIssue)).all()
    assert [i.mode for i in issues] == ["remote", "remote"]
    package_page = client.get(f"{url}/{issues[1].package_id}")  # its page: the republish form for it
    assert package_page.status_code == 200 and "cmi5" in package_page.get_data(as_text=True)
