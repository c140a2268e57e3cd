"""cmi5 and Tin Can packages: built from real exports like SCORM ones, and bad course structures refused.

The builder reads ``cmi5.xml`` (AUs in blocks, ``url``, ``launchMethod``, ``moveOn``) and
``tincan.xml`` (activities with ``<launch>``), keeps them byte for byte and adds the tracker,
in its xAPI mode, to each AU's launch page. What the tracker does in a browser is in
``test_xapi_browser.py``.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from conftest import beacon_body
from real_courses import REAL_COURSES
from scorm_content import script_config
from sqlalchemy import select

from app.extensions import db
from app.models import Event, PackageIssue
from app.services import packages

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


def test_remote_cmi5_is_refused_until_supported(make_client, tmp_path):
    customer, _ = make_client()
    with pytest.raises(packages.PackageError, match="remote"):
        build(customer, RISE_CMI5, mode="remote", content_url="https://content.example", store=object())


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
