"""Real cmi5 and Tin Can exports launched by the test LMS (tests/xapi_lms.py) against Ralph LRS.

Each course runs twice in Chromium, driven the same way: as exported (no tracker) and as the
deployed package the product builds from it. The AU must run as it does unwrapped: the same
statements (by verb, in order) reach the LRS, the cmi5 ``fetch`` URL is called once, by the
AU's page, and the server counts one launch plus the completion, pass or fail the AU's own
statements reported about the launched activity. Slow (an authoring tool's player, a real
LRS): SQLite pass only, one launch per course and mode, as the SCORM real-course runs.
"""

from __future__ import annotations

import contextlib
import zipfile
from urllib.parse import quote

import pytest
from conftest import ROOT, require
from real_courses import REAL_COURSES, course_frame
from remote_browser import content_origin
from sqlalchemy import select
from tracker_lms import context, events, wait_for  # noqa: F401
from xapi_lms import ralph, verbs, xapi_lms  # noqa: F401

from app import packages
from app.extensions import db
from app.models import RemoteContent

RISE = REAL_COURSES / "rise360-cmi5.zip"
ISPRING = REAL_COURSES / "ispring10.1-tincan-xapi.zip"
TIMEOUT = 90.0
UNLOAD_ONLY = {"terminated"}  # sent by SCORM Driver while the page unloads
KINDS = {"completed": "completed", "passed": "passed", "failed": "failed"}


def _structure(path):
    with zipfile.ZipFile(path) as archive:
        if "cmi5.xml" in archive.namelist():
            return packages.read_cmi5(archive.read("cmi5.xml"))[0]
        return packages.read_tincan(archive.read("tincan.xml"))[0]


def _install(xapi_lms, mode, path, client=None, server_url="", content_url=None):  # noqa: F811
    """The package on the test LMS: the base URL its cmi5.xml's relative AU urls are resolved against."""
    if mode == "original":
        return xapi_lms.add_zip(f"{mode}-{path.stem}", path)
    remote = {"mode": "remote", "content_url": content_url} if mode == "remote" else {}
    data, _ = packages.package_bytes(db.session, client=client, course_title=path.stem, scorm_version=None,
                                     content=path, server_url=server_url, issued_by="test", **remote)
    return xapi_lms.add(f"{mode}-{path.stem}", data)


def _drive_rise(page, ralph, registration):  # noqa: F811
    """SCORM Driver's own end (SetReachedEnd) once it has started (its initialized statement is stored),
    then its own CommitData, and wait for its completed statement to be stored."""
    frame = course_frame(page, "scormdriver/indexAPI.html", "typeof SetReachedEnd === 'function' && "
                         "IsLoaded() === true", TIMEOUT, "SCORM Driver (cmi5) is loaded")
    wait_for(lambda: "initialized" in verbs(ralph.statements(registration)), timeout=TIMEOUT,
             what="the AU's initialized statement")
    # SCORM Driver's start ends 200 ms after initialized: it reads the learner's time so far from the
    # LRS and keeps it. An AU closed before that reads it at unload, where SCORM Driver's keepalive
    # patch answers a GET with no response and its own Finish throws (wrapped or not; seen under load).
    # A learner takes longer than that; the test waits for it as a learner would.
    frame.wait_for_function("CMI5_TOTAL_PREV_DURATION !== null", timeout=TIMEOUT * 1000)
    assert frame.evaluate("SetReachedEnd()") is True
    assert frame.evaluate("CommitData()") is True
    wait_for(lambda: "completed" in verbs(ralph.statements(registration)), timeout=TIMEOUT,
             what="the AU's completed statement")


def _drive_ispring(page, ralph, registration):  # noqa: F811
    """This export was published for a fixed LRS of its author's (tincan.endPoint in res/index.html,
    exam-test.lrs.io, with a sign-in form): as exported it ignores the LMS's launch parameters and
    asks the learner to sign in to that LRS, unreachable here. Both modes must show that form alike."""
    page.wait_for_function("() => document.body && document.body.innerText.indexOf('Introduce yourself') >= 0",
                           timeout=TIMEOUT * 1000)


def run(xapi_lms, context, path, base, actor=None, drive=None):  # noqa: F811
    """Launch the package's first AU as the LMS does (from its course page), drive it to its end, close it."""
    unit = _structure(path)
    structure = xapi_lms.root / "pkg" / base.rsplit("/", 1)[1] / "cmi5.xml"  # as installed on the LMS
    cmi5 = structure.exists()
    installed = packages.read_cmi5(structure.read_bytes())[0] if cmi5 else unit
    au_url = installed.url if installed.absolute else f"{base}/{installed.url}"  # a remote package's is absolute
    if cmi5:
        url, registration = xapi_lms.launch_cmi5(au_url, unit.id, actor=actor, move_on=unit.move_on)
    else:
        url, registration = xapi_lms.launch_tincan(au_url, unit.id)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    page.goto(url, referer=f"{xapi_lms.url}/course/{unit.id}")  # the learner opens it from the LMS's page
    (drive or (_drive_rise if path == RISE else _drive_ispring))(page, xapi_lms.ralph, registration)
    page.goto("about:blank")  # the learner closes the AU: its unload handlers run
    if path == RISE:
        # SCORM Driver sends "terminated" while the page unloads (a keepalive fetch, xAPI's alternate
        # syntax): the tab stays open a while for it. A browser may still drop a send made at unload
        # (seen under load, wrapped or not), so it is waited for, not required (see UNLOAD_ONLY).
        with contextlib.suppress(AssertionError):
            wait_for(lambda: "terminated" in verbs(xapi_lms.ralph.statements(registration)), timeout=20,
                     what="the AU's terminated statement")
    page.close()
    return registration, errors


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.one_database  # what the LRS and the LMS record does not depend on the database
@pytest.mark.parametrize("path", [RISE, ISPRING], ids=["rise360-cmi5", "ispring10.1-tincan"])
def test_real_xapi_course_runs_as_exported_and_is_counted_once(path, xapi_lms, ralph, context, live_server,  # noqa: F811
                                                              make_client):
    client, _ = make_client(origins=[xapi_lms.url], local_http=True)
    plain, plain_errors = run(xapi_lms, context, path, _install(xapi_lms, "original", path))
    tracked, tracked_errors = run(xapi_lms, context, path, _install(xapi_lms, "deployed", path, client,
                                                                    live_server.url))
    plain_verbs, tracked_verbs = verbs(ralph.statements(plain)), verbs(ralph.statements(tracked))
    print(f"\n{path.stem}: original {plain_verbs} errors={plain_errors}\n"
          f"{path.stem}: deployed {tracked_verbs} errors={tracked_errors}")
    # The AU's statements reach the LRS the same, wrapped or not (but the one sent at unload, best effort).
    assert [v for v in tracked_verbs if v not in UNLOAD_ONLY] == [v for v in plain_verbs if v not in UNLOAD_ONLY]
    assert tracked_errors == plain_errors
    unit = _structure(path)
    reported = {KINDS[verb] for statement in ralph.statements(tracked)
                if (verb := statement["verb"]["id"].rsplit("/", 1)[-1]) in KINDS and statement["object"]["id"] == unit.id}
    if path == RISE:
        assert plain_verbs[:2] == ["launched", "initialized"] and "completed" in plain_verbs
        for registration in (plain, tracked):
            calls = xapi_lms.fetch_calls(registration)
            assert len(calls) == 1, calls  # once, by the AU's page (the tracker never calls it)
            assert calls[0]["referer"].startswith(xapi_lms.url + "/pkg/"), calls
        expected = sorted({"launch"} | reported)
        try:
            wait_for(lambda: sorted(e.kind for e in events()) == expected, what=f"events {expected}")
        except AssertionError:
            raise AssertionError(f"events stored {sorted(e.kind for e in events())}, expected {expected}") from None
        stored = events()
        assert len(stored) == len(expected) and {e.scorm_version for e in stored} == {"cmi5"}
        assert {e.lms_host for e in stored} == {xapi_lms.url.split("://")[1]}
    else:
        # Nothing reached the LMS's LRS (the course talks to its own), so nobody is counted.
        assert plain_verbs == [] and reported == set()
        assert events() == []


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.one_database  # what the LRS and the LMS record does not depend on the database
def test_real_cmi5_course_built_remote_runs_from_the_content_origin_as_exported(xapi_lms, ralph, context,  # noqa: F811
                                                                             live_server, make_client):
    """The Rise cmi5 export built remote: the LMS launches the AU straight from our content origin (its url
    in cmi5.xml is absolute there), with its own endpoint, fetch URL and actor; no relay. It runs as it does
    unwrapped, is counted once with its completion, and the learner never appears in the server's log."""
    client, _ = make_client(origins=[xapi_lms.url], local_http=True, anonymised=True)
    learner = xapi_lms.actor(name="rmt-learner-5e1f", display="Remote, Rita")
    plain, plain_errors = run(xapi_lms, context, RISE, _install(xapi_lms, "original", RISE), actor=learner)
    content = content_origin(live_server)
    remote, remote_errors = run(xapi_lms, context, RISE, _install(xapi_lms, "remote", RISE, client,
                                                                  live_server.url, content), actor=learner)
    plain_verbs, remote_verbs = verbs(ralph.statements(plain)), verbs(ralph.statements(remote))
    print(f"\nrise360-cmi5: original {plain_verbs} errors={plain_errors}\n"
          f"rise360-cmi5: remote {remote_verbs} errors={remote_errors}")
    assert [v for v in remote_verbs if v not in UNLOAD_ONLY] == [v for v in plain_verbs if v not in UNLOAD_ONLY]
    assert plain_verbs[:2] == ["launched", "initialized"] and "completed" in plain_verbs
    assert remote_errors == plain_errors
    calls = xapi_lms.fetch_calls(remote)
    assert len(calls) == 1 and calls[0]["origin"] == content, calls  # once, by the AU on our content origin
    assert calls[0]["referer"] is None  # the AU's page sends no Referer (its address holds the actor)
    unit = _structure(RISE)
    reported = {KINDS[verb] for statement in ralph.statements(remote)
                if (verb := statement["verb"]["id"].rsplit("/", 1)[-1]) in KINDS and statement["object"]["id"] == unit.id}
    expected = sorted({"launch"} | reported)
    assert "completed" in expected
    try:
        wait_for(lambda: sorted(e.kind for e in events()) == expected, what=f"events {expected}")
    except AssertionError:
        raise AssertionError(f"events stored {sorted(e.kind for e in events())}, expected {expected}") from None
    stored = events()
    assert len(stored) == len(expected) and {e.scorm_version for e in stored} == {"cmi5"}
    assert {e.lms_host for e in stored} == {xapi_lms.url.split("://")[1]}  # the LMS it was opened from
    # The launch and the AU's page are in the access log by their path alone: no actor, name, fetch URL or
    # registration in any line (the client is anonymised: no plain ID anywhere).
    log = live_server.log_text()
    package_id = str(db.session.scalar(select(RemoteContent.package_id)))
    assert f"GET /{package_id}/launch/0 HTTP/1.1\" 302" in log
    assert f"/{package_id}/" in log and "scormdriver/indexAPI.html HTTP/1.1\" 200" in log
    for secret in ("rmt-learner-5e1f", "Rita", "actor", "fetch", remote, quote(xapi_lms.url, safe="")):
        assert secret not in log, secret


HAND_WRITTEN_AU = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Hand-written AU</title><script src="cmi5.umd.js"></script></head>
<body><p>A cmi5 AU written with @xapi/cmi5</p><script>
window.auState = "starting";
var cmi5 = Cmi5.instance; // the launch parameters from this page's address
cmi5.initialize()
  .then(function () { window.auState = "initialized"; return cmi5.complete(); })
  .then(function () { return cmi5.pass(); })
  .then(function () { return cmi5.terminate(); })
  .then(function () { window.auState = "done"; }, function (e) { window.auState = "error: " + e; });
</script></body></html>
"""


def _hand_written_au(folder):
    """A cmi5 course of one AU using @xapi/cmi5 from npm (tests/browser, installed by make test-install)."""
    library = ROOT / "tests" / "browser" / "node_modules" / "@xapi" / "cmi5" / "dist" / "Cmi5.umd.js"
    require(library.is_file(), "@xapi/cmi5 is not installed (make test-install)")
    structure = ('<?xml version="1.0" encoding="utf-8"?>\n<courseStructure xmlns="https://w3id.org/xapi/profiles/cmi5/'
                 'v1/CourseStructure.xsd"><course id="https://au.example.com/course"><title><langstring lang="en">'
                 'Hand</langstring></title><description><langstring lang="en"/></description></course>'
                 '<au id="https://au.example.com/au/1" moveOn="CompletedAndPassed"><title><langstring lang="en">AU'
                 '</langstring></title><description><langstring lang="en"/></description><url>au/index.html</url>'
                 '</au></courseStructure>')
    path = folder / "hand-written-cmi5.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cmi5.xml", structure)
        archive.writestr("au/index.html", HAND_WRITTEN_AU)
        archive.write(library, "au/cmi5.umd.js")
    return path


def _drive_hand_written(page, ralph, registration):  # noqa: F811
    page.wait_for_function("window.auState === 'done' || String(window.auState).indexOf('error') === 0",
                           timeout=TIMEOUT * 1000)
    assert page.evaluate("window.auState") == "done"


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.one_database  # what the LRS and the LMS record does not depend on the database
def test_hand_written_cmi5_au_runs_deployed_and_remote_as_unwrapped(xapi_lms, ralph, context, live_server,  # noqa: F811
                                                                    make_client, tmp_path):
    """An AU written with @xapi/cmi5 (not an authoring tool's player): deployed and remote, the same
    statements as unwrapped, the fetch URL called once by the AU, a launch, a completion and a pass counted
    for each package."""
    path = _hand_written_au(tmp_path)
    client, _ = make_client(origins=[xapi_lms.url], local_http=True)
    results = {}
    for mode in ("original", "deployed", "remote"):
        base = _install(xapi_lms, mode, path, client, live_server.url, content_origin(live_server))
        results[mode] = run(xapi_lms, context, path, base, drive=_drive_hand_written)
    seen = {mode: verbs(ralph.statements(registration)) for mode, (registration, _) in results.items()}
    print(f"\nhand-written cmi5: {seen}")
    assert seen["original"] == ["launched", "initialized", "completed", "passed", "terminated"]
    assert seen["deployed"] == seen["remote"] == seen["original"]
    assert {mode: errors for mode, (_, errors) in results.items()} == {m: [] for m in results}
    for mode, (registration, _) in results.items():
        calls = xapi_lms.fetch_calls(registration)
        assert len(calls) == 1, (mode, calls)
    assert xapi_lms.fetch_calls(results["remote"][0])[0]["origin"] == content_origin(live_server)
    expected = sorted(["launch", "completed", "passed"] * 2)  # deployed and remote: two packages
    try:
        wait_for(lambda: sorted(e.kind for e in events()) == expected, what=f"events {expected}")
    except AssertionError:
        raise AssertionError(f"events stored {sorted(e.kind for e in events())}, expected {expected}") from None
    assert {e.lms_host for e in events()} == {xapi_lms.url.split("://")[1]}
