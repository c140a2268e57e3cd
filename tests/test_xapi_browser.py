"""The tracker's xAPI mode in Chromium: actor shapes, hostile actors, statements seen and never touched.

A hand-written AU (cmi5 or Tin Can, below) is built into a deployed package and launched by the
test LMS (tests/xapi_lms.py) against Ralph LRS. The AU does what the specifications ask: a cmi5
AU POSTs to the ``fetch`` URL for its token, then sends ``initialized`` and its result;
a Tin Can AU uses ``auth``. It sends statements the three ways real AUs do (XMLHttpRequest,
fetch, and a keepalive fetch in xAPI's alternate syntax as the page unloads). Each case checks
what reached the LRS, what the server counted, and that no beacon was answered 5xx.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from tracker_lms import context, events, wait_for  # noqa: F401
from xapi_lms import ralph, verbs, xapi_lms  # noqa: F401

from app import packages
from app.extensions import db
from app.ingest import golive
from app.learners.held_back_models import HeldBackBeacon
from app.models import Learner
from app.packages import sealing

# one_database: the tracker's xAPI side in a browser.
pytestmark = pytest.mark.one_database

ACTIVITY = "https://courses.example.com/safety/au"

AU_SCRIPT = r"""(function () {
  var q = {};
  window.location.search.slice(1).split("&").forEach(function (pair) {
    var at = pair.indexOf("=");
    q[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1));
  });
  var activity = q.activityId || q.activity_id, auth = q.auth || null;
  function say(text) { document.getElementById("state").textContent = text; }
  function statement(verb) {
    var actor; try { actor = JSON.parse(q.actor); } catch (e) { actor = null; }
    if (!actor || typeof actor !== "object" || Array.isArray(actor) || !actor.objectType) {
      actor = { objectType: "Agent", account: { homePage: "https://lms.example", name: "fallback" } };
    }
    if (Array.isArray(actor.mbox)) { actor = { objectType: "Agent", mbox: actor.mbox[0] }; }
    if (Array.isArray(actor.account)) { actor = { objectType: "Agent", account: { homePage: "https://lms.example", name: "fallback" } }; }
    if (actor.account && typeof actor.account.name !== "string") { actor.account = { homePage: "https://lms.example", name: "fallback" }; }
    delete actor.name;
    return { id: crypto.randomUUID(), actor: actor, verb: { id: "http://adlnet.gov/expapi/verbs/" + verb },
             object: { id: activity, objectType: "Activity" }, context: { registration: q.registration } };
  }
  function xhr(verb, then) {
    var r = new XMLHttpRequest();
    r.open("POST", q.endpoint + "statements");
    r.setRequestHeader("Authorization", auth);
    r.setRequestHeader("Content-Type", "application/json");
    r.setRequestHeader("X-Experience-API-Version", "1.0.3");
    r.onload = function () { window.auLog.push([verb, r.status]); then(); };
    r.send(JSON.stringify(statement(verb)));
  }
  function viaFetch(verb, then) {
    fetch(q.endpoint + "statements", { method: "POST", body: JSON.stringify([statement(verb)]),
      headers: { "Authorization": auth, "Content-Type": "application/json", "X-Experience-API-Version": "1.0.3" } })
      .then(function (response) { window.auLog.push([verb, response.status]); then(); });
  }
  function unloadVerb(verb) {
    window.addEventListener("pagehide", function () {
      var form = "Authorization=" + encodeURIComponent(auth) + "&Content-Type=application%2Fjson" +
        "&X-Experience-API-Version=1.0.3&content=" + encodeURIComponent(JSON.stringify(statement(verb)));
      fetch(q.endpoint + "statements?method=POST", { method: "POST", keepalive: true, body: form,
        headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    });
  }
  function run() {
    var result = q.result || "completed";
    xhr(q.fetch ? "initialized" : "attempted", function () {
      if (q.via === "unload") { unloadVerb(result); say("ready"); return; }
      (q.via === "fetch" ? viaFetch : xhr)(result, function () { say("done"); });
    });
  }
  window.auLog = [];
  if (q.fetch) {
    var r = new XMLHttpRequest();
    r.open("POST", q.fetch);
    r.onload = function () { auth = "Basic " + JSON.parse(r.responseText)["auth-token"]; run(); };
    r.send();
  } else { run(); }
})();
"""

AU_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>AU</title></head>
<body><p id="state">loading</p><script src="au.js"></script></body></html>
"""

CMI5 = f"""<?xml version="1.0" encoding="utf-8"?>
<courseStructure xmlns="https://w3id.org/xapi/profiles/cmi5/v1/CourseStructure.xsd">
  <course id="https://courses.example.com/safety"><title><langstring lang="en">Safety</langstring></title></course>
  <block id="https://courses.example.com/safety/block"><title><langstring lang="en">B</langstring></title>
    <au id="{ACTIVITY}" moveOn="Completed" launchMethod="AnyWindow">
      <title><langstring lang="en">AU</langstring></title><url>au/index.html</url></au>
  </block>
</courseStructure>
"""

TINCAN = f"""<?xml version="1.0"?>
<tincan xmlns="http://projecttincan.com/tincan.xsd"><activities>
  <activity id="{ACTIVITY}" type="http://adlnet.gov/expapi/activities/course">
    <name>Safety</name><launch lang="und">au/index.html</launch></activity>
</activities></tincan>
"""


def au_export(standard: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cmi5.xml" if standard == "cmi5" else "tincan.xml", CMI5 if standard == "cmi5" else TINCAN)
        archive.writestr("au/index.html", AU_PAGE)
        archive.writestr("au/au.js", AU_SCRIPT)
    buffer.seek(0)
    return buffer


def deploy(xapi_lms, client, standard, server_url, name="deployed"):  # noqa: F811
    data, _ = packages.package_bytes(db.session, client=client, course_title="Safety", scorm_version=None,
                                     content=au_export(standard), server_url=server_url, issued_by="test")
    return xapi_lms.add(f"{name}-{standard}", data) + "/au/index.html"


def launch(xapi_lms, context, server_url, url, leave=True, extra=""):  # noqa: F811
    page = context.new_page()
    seen = {"statuses": [], "errors": []}
    page.on("response", lambda r: seen["statuses"].append(r.status) if r.url.startswith(server_url) else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto(url + extra)
    page.wait_for_function("['done', 'ready'].indexOf(document.getElementById('state').textContent) >= 0")
    seen["log"] = page.evaluate("window.auLog")
    if leave:
        page.goto("about:blank")
    page.close()
    return seen


ACTORS = [
    pytest.param({"objectType": "Agent", "account": {"homePage": "https://lms.example", "name": "  LEARNER-7 "},
                  "name": "Doe, Jane"}, "LEARNER-7", "Doe, Jane", id="account"),
    pytest.param({"objectType": "Agent", "mbox": "mailto:Jane.Doe@Example.com", "name": "Jane Doe"},
                 "jane.doe@example.com", "Jane Doe", id="mbox"),
    pytest.param({"name": ["Jane Doe"], "mbox": ["mailto:jane@example.com"], "objectType": "Agent"},
                 "jane@example.com", "Jane Doe", id="tincan-arrays"),
    pytest.param({"objectType": "Agent", "name": ["J"], "account": [{"accountServiceHomePage": "https://lms.example",
                                                                    "accountName": "u-9"}]},
                 "u-9", "J", id="tincan-0.9-account"),
    pytest.param({"objectType": "Agent", "mbox": "mailto:noname@example.com"}, "noname@example.com", "",
                 id="missing-name"),
    pytest.param({"objectType": "Agent", "account": {"homePage": "https://lms.example", "name": "undefined"},
                  "name": "Placeholder"}, "undefined", "Placeholder", id="placeholder-id"),
]


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("actor,student_id,name", ACTORS)
def test_actor_shapes_give_the_learner_and_one_launch_and_completion(actor, student_id, name, xapi_lms, ralph,  # noqa: F811
                                                                      context, live_server, make_client):  # noqa: F811
    client, _ = make_client(origins=[xapi_lms.url], local_http=True)
    url, registration = xapi_lms.launch_tincan(deploy(xapi_lms, client, "tincan", live_server.url), ACTIVITY,
                                               actor=actor)
    seen = launch(xapi_lms, context, live_server.url, url)
    assert seen["errors"] == [] and seen["log"] == [["attempted", 200], ["completed", 200]]
    assert verbs(ralph.statements(registration)) == ["attempted", "completed"]
    if student_id == "undefined":
        # A placeholder ID is held back, counted nowhere until a CSM releases it, as for SCORM.
        wait_for(lambda: db.session.query(HeldBackBeacon).count() == 2, what="launch and completion held back")
        assert events() == []
        from flask import current_app

        report = golive.health_report(db.session, current_app.extensions["pseudonymiser"], client)
        assert "held_back" in {f.code for f in report.flags}
        return
    wait_for(lambda: sorted(e.kind for e in events()) == ["completed", "launch"], what="launch and completion")
    learner = db.session.query(Learner).one()
    assert (learner.identity, learner.name or "") == (student_id, name)
    # The go-live check sees the cmi5/xAPI launch like a SCORM one (and flags a placeholder ID).
    from flask import current_app

    shown = golive.recent_beacons(db.session, client)
    assert sorted(b["event"] for b in shown) == ["completed", "launch"]
    assert {b["student_id"] for b in shown} == {student_id}
    flags = {f.code for f in golive.health_report(db.session, current_app.extensions["pseudonymiser"], client).flags}
    assert ("placeholder_ids" in flags) == (student_id == "undefined")


HOSTILE = [
    pytest.param("{not json", id="not-json"),
    pytest.param(json.dumps({"objectType": "Agent", "mbox": "mailto:a@example.com", "name": "x" * 5000}),
                 id="too-long"),
    pytest.param("[" * 3000 + "]" * 3000, id="nested-arrays"),
    pytest.param(json.dumps({"objectType": "Agent", "account": {"homePage": "https://x", "name": {"a": [1, 2]}}}),
                 id="account-name-object"),
    pytest.param(json.dumps({"objectType": "Agent", "account": {"homePage": "https://x", "name": "n" * 300}}),
                 id="id-too-long"),
    pytest.param(json.dumps({"objectType": "Agent", "account": {"homePage": "https://x", "name": "a\u0000b"}}),
                 id="control-character"),
    pytest.param("", id="empty"),
]


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("actor", HOSTILE)
def test_hostile_actor_never_breaks_the_course_nor_gets_a_500(actor, xapi_lms, ralph, context, live_server,  # noqa: F811
                                                             make_client):
    client, _ = make_client(origins=[xapi_lms.url], local_http=True)
    url, registration = xapi_lms.launch_tincan(deploy(xapi_lms, client, "tincan", live_server.url), ACTIVITY,
                                               actor=actor)
    seen = launch(xapi_lms, context, live_server.url, url)
    assert seen["errors"] == [] and seen["log"] == [["attempted", 200], ["completed", 200]]  # the AU ran
    assert verbs(ralph.statements(registration)) == ["attempted", "completed"]
    assert all(status < 500 for status in seen["statuses"])
    # The control character reaches the server and is refused (400); every other shape gives no learner.
    assert events() == []


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("via,result", [("fetch", "passed"), ("unload", "failed"), ("xhr", "completed")])
def test_cmi5_au_calls_fetch_once_and_its_statements_are_counted_untouched(via, result, xapi_lms, ralph,  # noqa: F811
                                                                          context, live_server, make_client):
    client, _ = make_client(origins=[xapi_lms.url], local_http=True)
    base = deploy(xapi_lms, client, "cmi5", live_server.url)
    plain = xapi_lms.add("original-cmi5", au_export("cmi5").getvalue()) + "/au/index.html"
    runs = {}
    for mode, au_url in (("original", plain), ("deployed", base)):
        url, registration = xapi_lms.launch_cmi5(au_url, ACTIVITY, move_on="Completed")
        launch(xapi_lms, context, live_server.url, url, extra=f"&via={via}&result={result}")
        wait_for(lambda r=registration: result in verbs(ralph.statements(r)), what=f"the AU's {result} statement")
        runs[mode] = registration
        calls = xapi_lms.fetch_calls(registration)
        assert len(calls) == 1 and calls[0]["referer"].startswith(au_url), calls  # by the AU, once
    statements = {mode: ralph.statements(registration) for mode, registration in runs.items()}
    assert verbs(statements["deployed"]) == verbs(statements["original"]) == ["launched", "initialized", result]
    for statement in statements["deployed"][1:]:  # the AU's own, as it wrote them (no field added or changed)
        assert set(statement) >= {"id", "actor", "verb", "object", "context"}
        assert statement["context"] == {"registration": runs["deployed"]}
    wait_for(lambda: sorted(e.kind for e in events()) == sorted(["launch", result]), what=f"launch and {result}")



@pytest.mark.browser
@pytest.mark.e2e
def test_a_sealed_clients_cmi5_package_sends_only_sealed_ids(xapi_lms, ralph, context, live_server,  # noqa: F811
                                                             make_client):
    """The xAPI mode seals the actor's ID and name like the SCORM mode: nothing plain leaves the browser."""
    client, _ = make_client(sealed=True, origins=[xapi_lms.url], local_http=True)
    data, _ = packages.package_bytes(db.session, client=client, course_title="Safety", scorm_version=None,
                                     content=au_export("cmi5"), server_url=live_server.url, issued_by="test")
    key, sealed = os.urandom(32), io.BytesIO()
    sealing.seal_zip(io.BytesIO(data), sealed, key)  # what the client does offline (or in the sealing page)
    url = xapi_lms.add("sealed-cmi5", sealed.getvalue()) + "/au/index.html"
    launch_url, _registration = xapi_lms.launch_cmi5(url, ACTIVITY, actor={
        "objectType": "Agent", "account": {"homePage": "https://lms.example", "name": "E-1001"}, "name": "Doe, Jane"})
    bodies = []
    context.on("request", lambda r: bodies.append(r.post_data or "") if r.url.startswith(live_server.url) else None)
    seen = launch(xapi_lms, context, live_server.url, launch_url)
    assert seen["errors"] == []
    wait_for(lambda: "launch" in {e.kind for e in events()}, what="the sealed launch")
    learner = db.session.query(Learner).one()
    assert learner.pseudonymised and learner.identity.startswith("p:")
    assert bodies and all("E-1001" not in body and "Doe" not in body for body in bodies)
    assert any(sealing.sealed_student_id(key, "E-1001") in body for body in bodies)
