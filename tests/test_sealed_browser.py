"""Sealed packages in a real browser: the sealing page (driven with Playwright, offline once
loaded) seals a package built for a sealed client; the package runs in the strict test LMS
(a real SCORM runtime from npm, tests/tracker_lms.py) and reports to the real server; the plain
student ID and name reach no table, log line or webhook body, the same learner is one learner
across launches and across the page's and the offline command's sealing, and the sealed ID the
page computes finds the learner for erasure.

The normalisation sealing.js runs in the learner's browser is checked against app/identity/student_ids.py
on tricky inputs: it must give the very string the server would have stored.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import unicodedata
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from remote_browser import build_remote, course_frame
from remote_browser import lms_log as remote_lms_log
from sqlalchemy import select
from test_privacy import dump_database
from tracker_lms import (  # noqa: F401 (fixtures)
    build,
    content_frame,
    context,
    count,
    events,
    lms,
    wait_for,
)

from app.extensions import db
from app.identity.student_ids import InvalidIdentity, normalise_name, normalise_student_id
from app.learners.held_back_models import HeldBackBeacon
from app.models import Event, Learner
from app.outbound import outbox, webhooks
from app.packages import sealing

# one_database: sealing in a browser and the tracker; test_sealed_packages and test_privacy run in both passes.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]

STUDENT_ID = "  Zq7Sealed.Student@Example.ORG "
STUDENT_NAME = "Xylophage, Quentin-Sealed"
PLAIN_FORMS = {"zq7sealed.student@example.org", "Zq7Sealed", "zq7sealed", "Xylophage", "Quentin-Sealed"}


def open_sealing_page(context, live_server):
    page = context.new_page()
    page.goto(live_server.url + "/seal")
    page.wait_for_function("typeof ScormUsageSeal === 'object'")
    return page


def seal_in_page(context, live_server, data: bytes, key: str | None = None) -> tuple[bytes, str]:
    """Seal ``data`` in the sealing page with the network off; (sealed zip, client key)."""
    page = open_sealing_page(context, live_server)
    requests = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("blob:", "data:")) else None)
    context.set_offline(True)  # loaded: from now on it must work with no network at all
    try:
        if key is None:
            page.click("#seal-new-key")
            key = page.input_value("#seal-key")
        else:
            page.fill("#seal-key", key)
        page.set_input_files("#seal-package", files=[{"name": "course.zip", "mimeType": "application/zip",
                                                      "buffer": data}])
        page.click("#seal-run")
        page.wait_for_selector("#seal-download:not([hidden])")
        with page.expect_download() as download:
            page.click("#seal-download")
        sealed = Path(download.value.path()).read_bytes()
        assert "Sealed with key" in page.text_content("#seal-status")
    finally:
        context.set_offline(False)
    assert requests == []  # nothing the page did asked any server for anything
    page.close()
    return sealed, key


def page_sealed_id(context, live_server, key: str, student_id: str) -> str:
    page = open_sealing_page(context, live_server)
    page.fill("#seal-key", key)
    page.fill("#seal-student-id", student_id)
    page.click("#seal-compute")
    page.wait_for_function("document.getElementById('seal-sealed-id').textContent.length > 0")
    value = page.text_content("#seal-sealed-id")
    page.close()
    return value


def seal_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        name = next(n for n in sealing.SEALED_FILES if n in archive.namelist())
        text = archive.read(name).decode("utf-8")
    start = text.index("var SEAL = ") + len("var SEAL = ")
    return json.loads(text[start:text.index(";", start)])


def no_plain_values(*haystacks: str) -> None:
    for haystack in haystacks:
        lowered = haystack.casefold()
        found = {form for form in PLAIN_FORMS if form.casefold() in lowered}
        assert not found, f"plain learner data found: {found}"


def webhook_bodies() -> str:
    """Fan the outbox's learner events out to an endpoint: the bodies a receiver would get."""
    outbox.fan_out(db.session, dt.datetime.now(dt.UTC))
    return dump_database()


# --- the same normalisation in the browser as on the server --------------------------------

TRICKY_IDS = [
    "  jane@example.com ", "Jane@Example.COM", "JANE", "\tE-1001\n", "\u00a0 E-1001 \u3000", "\u200bjane\u200d",
    "STRASSE@EXAMPLE.DE", "Straße@example.de", "ǅemal@example.com", "İstanbul@example.com", "İSTANBUL",
    "ΟΔΥΣΣΕΥΣ@example.gr", "ὈΔΥΣΣΕΎΣ@EXAMPLE.GR", "ﬁnance@example.com", "Ꭰ@example.com", "ꭰ@example.com",
    "e\u0301@example.com", "\u00e9@example.com", "Å@example.com", "\u212b@example.com", "mailto:Jane@Example.com",
    "MAILTO:JANE@EXAMPLE.COM", "ＡＢＣ＠ｅｘａｍｐｌｅ．ｃｏｍ", "abc＠EXAMPLE", "😀@Example.com", "\ufeffE-7",
    "\x1cE-8\x1f", "\x85E-9\x85", "E\x00-10", "", "   ", "\u200b", "E-\u2028-11", "a" * 255, "a" * 256,
    "Ⅻ@example.com", "ΣΑΣ@example.com", "ﬃ@EXAMPLE.com", "ŉ@example.com", "ᾼ@example.com", "K@example.com",
    "undefined", "NULL", " 0 ", "None", "[object Object]",
]
TRICKY_NAMES = [
    "Doe, Jane", "  Doe,\tJane\n ", "Doe\u200b, Jane", "Doe\x00,\x1f Jane", "D\u0301oe", "\u3000Doe\u3000Jane\u3000",
    "x" * 300 + " ", "x" * 254 + " y", "", "\x85Doe\x85", "ΣΑΣ", "😀 Doe",
]


def random_texts(seed: int, n: int) -> list[str]:
    pool = ("abcXYZ019@.-_ \t\n\u00a0\u2003\u3000\u200b\u200d\u2060\ufeff\u00ad\u0301\u0308ßİıſΣσςǅﬁﬃĲ"
            "ÅÅÅΩΩᏸꭰᎠ\u0345ΐẞ@＠ａＡ😀𝔘\x1c\x1f\x85\x7f")
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def python_id(raw: str):
    try:
        return {"ok": normalise_student_id(raw)}
    except InvalidIdentity:
        return {"error": True}


def test_sealing_js_normalises_exactly_as_the_server(context, live_server):
    page = open_sealing_page(context, live_server)
    ids = TRICKY_IDS + random_texts(17, 300)
    names = TRICKY_NAMES + random_texts(23, 200)
    browser = page.evaluate("""([ids, names]) => ({
        ids: ids.map(function (v) {
          try { return {ok: ScormUsageSeal.normaliseStudentId(v)}; } catch (e) { return {error: true}; } }),
        names: names.map(function (v) { return ScormUsageSeal.normaliseName(v); }),
        lone: (function () {
          try { ScormUsageSeal.normaliseStudentId("E-1" + String.fromCharCode(0xd800)); return "kept"; }
          catch (e) { return "refused"; } })(),
        loneName: ScormUsageSeal.normaliseName("Doe" + String.fromCharCode(0xdc00) + ", Jane"),
        placeholders: ["undefined", "NULL", "0", "None", "[object Object]", "E-1"].map(
          function (v) { return ScormUsageSeal.isPlaceholder(ScormUsageSeal.normaliseStudentId(v)); })
      })""", [ids, names])
    mismatched = [(raw, got, python_id(raw)) for raw, got in zip(ids, browser["ids"]) if got != python_id(raw)]
    assert mismatched == []
    assert [n for n, got in zip(names, browser["names"]) if got != normalise_name(n)] == []
    assert browser["lone"] == "refused" and browser["loneName"] == "Doe, Jane"
    assert browser["placeholders"] == [True, True, True, True, True, False]
    assert unicodedata.unidata_version == sealing.seal_tables()["unicode"]


def test_the_page_and_the_offline_command_seal_the_same_way(context, live_server, tmp_path, screenshots_dir):
    key = "k" * 10 + "Q" * 33
    page = open_sealing_page(context, live_server)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    page.fill("#seal-key", key)
    page.wait_for_function("document.getElementById('seal-key-status').textContent.indexOf('Key ') === 0")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert not page.is_visible("#seal-download") and not page.is_visible("#seal-key-download")
    page.screenshot(path=str(screenshots_dir / "sealing-page-390.png"), full_page=True)
    from_page = page.evaluate("""([key, ids]) => ScormUsageSeal.packageSeal(key).then(function (seal) {
        return Promise.all(ids.map(function (id) { return ScormUsageSeal.sealLearner(seal, id, "Doe, Jane"); }))
          .then(function (learners) { return {seal: seal, learners: learners}; }); })""",
                              [key, ["  Jane@Example.COM", "E-1001", "undefined"]])
    client_key = sealing.read_client_key(key)
    assert from_page["seal"] == sealing.package_seal(client_key)
    assert [learner["id"] for learner in from_page["learners"]] == [
        sealing.sealed_student_id(client_key, raw) for raw in ("jane@example.com", "E-1001", "undefined")]
    assert [learner["placeholder"] for learner in from_page["learners"]] == [False, False, True]
    assert len({learner["name"] for learner in from_page["learners"]}) == 1
    assert from_page["learners"][0]["name"].startswith("sealed:v1:")


# --- a deployed package, sealed in the page, in a real LMS -----------------------------------


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_sealed_deployed_package_never_shows_the_plain_id(version, lms, context, live_server, make_client, runner,
                                                          tmp_path):
    customer, _ = make_client(sealed=True, origins=[lms.url], local_http=True)
    webhooks.add_endpoint(db.session, url="http://127.0.0.1:9/hooks", client=None, event_types=[], actor="test",
                          production=False)
    unsealed = build(customer, version, live_server.url)
    sealed, key = seal_in_page(context, live_server, unsealed)
    launch = lms.add("sealed", sealed)

    # The offline command, with the same key, on the same package: the same seal, byte for byte.
    (tmp_path / "in.zip").write_bytes(unsealed)
    (tmp_path / "key.txt").write_text(key)
    made = runner.invoke(args=["package", "seal", "--key-file", str(tmp_path / "key.txt"), "--in",
                               str(tmp_path / "in.zip"), "--out", str(tmp_path / "out.zip")])
    assert made.exit_code == 0, made.output
    offline = (tmp_path / "out.zip").read_bytes()
    assert seal_of(offline) == seal_of(sealed)
    launch_offline = lms.add("sealed-offline", offline)

    bodies = []
    page = context.new_page()
    page.on("request", lambda r: bodies.append(r.post_data) if "/api/v1/beacons" in r.url else None)
    page.goto(lms.page(version, f"{launch}/index.html", student_id=STUDENT_ID, student_name=STUDENT_NAME))
    wait_for(lambda: count(Event) == 1)
    frame = content_frame(page)
    frame.locator("#next").click()
    frame.locator("#complete").click()
    wait_for(lambda: count(Event) == 2)
    page.close()

    # Another day's visit, in another tab, from the package the offline command sealed: the same learner.
    second = context.new_page()
    second.on("request", lambda r: bodies.append(r.post_data) if "/api/v1/beacons" in r.url else None)
    second.goto(lms.page(version, f"{launch_offline}/index.html", student_id="zq7sealed.student@example.org",
                         student_name=STUDENT_NAME))
    wait_for(lambda: count(Event) == 3)
    second.close()

    assert sorted(e.kind for e in events()) == ["completed", "launch", "launch"]
    learners = db.session.scalars(select(Learner)).all()
    assert len(learners) == 1 and learners[0].identity.startswith("p:") and learners[0].name.startswith("n:")
    sent = [json.loads(b) for b in bodies]
    assert sent and all(b["student_id"].startswith("sealed:v1:") and b["student_name"].startswith("sealed:v1:")
                        for b in sent)
    assert all("placeholder" not in b for b in sent)
    no_plain_values(*bodies, webhook_bodies(), live_server.log_text())
    assert "sealed:v1:" not in dump_database()  # the sealed value is pseudonymised again, like any ID

    # The page's sealed ID of the learner finds them for erasure.
    sealed_id = page_sealed_id(context, live_server, key, STUDENT_ID)
    assert sealed_id == sent[0]["student_id"]
    erased = runner.invoke(args=["learner", "erase", "--client", customer.slug, "--student-id", sealed_id, "--json"])
    assert erased.exit_code == 0 and json.loads(erased.output)["erased"] == 1
    assert count(Learner) == 0 and count(Event) == 0


def test_a_placeholder_id_is_flagged_before_sealing(lms, context, live_server, make_client):
    customer, _ = make_client(sealed=True, origins=[lms.url], local_http=True)
    sealed, _key = seal_in_page(context, live_server, build(customer, "1.2", live_server.url))
    launch = lms.add("sealed", sealed)
    bodies = []
    page = context.new_page()
    page.on("request", lambda r: bodies.append(r.post_data) if "/api/v1/beacons" in r.url else None)
    page.goto(lms.page("1.2", f"{launch}/index.html", student_id="undefined", student_name=""))
    wait_for(lambda: count(HeldBackBeacon) == 1)  # held back on the flag, counted nowhere
    sent = json.loads(bodies[0])
    assert sent["placeholder"] is True and sent["student_id"].startswith("sealed:v1:")
    assert sent["student_name"] == ""
    assert count(Event) == 0


def test_an_unsealed_package_of_a_sealed_client_sends_nothing(lms, context, live_server, make_client):
    """A package that was never sealed holds no key: it never sends a plain ID (nothing is counted)."""
    customer, _ = make_client(sealed=True, origins=[lms.url], local_http=True)
    launch = lms.add("unsealed", build(customer, "2004", live_server.url))
    bodies = []
    page = context.new_page()
    page.on("request", lambda r: bodies.append(r.post_data) if "/api/v1/beacons" in r.url else None)
    page.goto(lms.page("2004", f"{launch}/index.html", student_id=STUDENT_ID, student_name=STUDENT_NAME))
    frame = content_frame(page)
    frame.locator("#next").click()  # the course runs as ever
    page.wait_for_function("window.lmsLog.indexOf('Initialize') >= 0")
    page.reload()
    assert bodies == [] and count(Event) == 0


# --- a remote package: sealed by the launcher on the LMS, before the content origin sees it ---


def test_sealed_remote_package_hands_only_sealed_values_to_the_content_origin(lms, context, live_server,
                                                                              make_client, runner):
    customer, _ = make_client(sealed=True, origins=[lms.url], local_http=True)
    data, _built = build_remote(customer, "2004", live_server)
    sealed, key = seal_in_page(context, live_server, data)
    launch = lms.add("remote-sealed", sealed)

    to_content = []
    page = context.new_page()
    page.on("request", lambda r: to_content.append(r.url + " " + (r.post_data or ""))
            if r.url.startswith(f"https://localhost:{live_server.port}") or "/api/v1/beacons" in r.url else None)
    page.goto(lms.page("2004", f"{launch}/index.html", student_id=STUDENT_ID, student_name=STUDENT_NAME))
    wait_for(lambda: count(Event) == 1, what="the remote launch to be counted")
    course_frame(page).locator("#next").click()
    course_frame(page).locator("#complete").click()
    wait_for(lambda: count(Event) == 2, what="the completion to be counted")
    assert "Initialize" in remote_lms_log(page)
    # What the course on our content origin sees as the learner: the sealed values.
    launcher = next(f for f in page.frames if f.url.startswith(lms.url) and "remote-sealed/index.html" in f.url)
    handed = launcher.evaluate("document.getElementById('remote-content').src")
    hand = json.loads(unquote(handed.split("#scorm-remote=", 1)[1]))
    sealed_id = page_sealed_id(context, live_server, key, STUDENT_ID)
    assert hand["data"]["cmi.learner_id"][0] == sealed_id
    assert hand["data"]["cmi.learner_name"][0].startswith("sealed:v1:") and hand["placeholder"] is False
    # Every address and body that reached our origins (the player's address carries the hand-over).
    no_plain_values(unquote(handed), *(unquote(x) for x in to_content))
    no_plain_values(webhook_bodies(), live_server.log_text())
    assert count(Learner) == 1
    erased = runner.invoke(args=["learner", "erase", "--client", customer.slug, "--student-id", sealed_id, "--json"])
    assert json.loads(erased.output)["erased"] == 1
