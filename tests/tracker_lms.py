"""The strict test LMS of the tracker's browser tests, and test content that records what it sees.

The LMS page (tests/browser/lms/) runs a real SCORM runtime, scorm-again (1.2 and 2004)
or simplify-scorm (1.2), behind a wrapper that records every call and flags calls out of
protocol (see lms.js). It and the unzipped packages are served over HTTP by a small static
server (another origin than the tracking server, as on a real LMS); beacons travel over
HTTPS to gunicorn (`live_server`).

PROBE_SCRIPT is content whose behaviour comes from its launch URL's query string, and which
writes each API answer it got into the LMS page's `contentLog`, so a test can compare what
the content saw with and without the tracker:
  v=1.2|2004; init=now|soon|late|never (soon: 0.5 s, before the tracker's own 2 s wait;
  late: 3 s, after it); errors=1 reads GetLastError after every call; learner=1 reads the
  learner's ID and name itself; status=completed|passed|...; statusat=unload sets it in the
  unload handler (as many courses do, just before finishing); finish=now|unload|none.
"""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import ROOT, free_port
from scorm_content import NODE_MODULES, SCORM_AGAIN, QuietHandler, require_node_modules
from sqlalchemy import func, select

from app import packages
from app.extensions import db
from app.models import Event

LMS_FILES = ROOT / "tests" / "browser" / "lms"
SIMPLIFY_SCORM = NODE_MODULES / "simplify-scorm" / "src" / "scormAPI.js"
QUEUE_KEY = "scormUsageTracker.queue.v1"
RUNTIMES = [("scorm-again", "1.2"), ("scorm-again", "2004"), ("simplify-scorm", "1.2")]
RUNTIME_IDS = [f"{name}-{version}" for name, version in RUNTIMES]


@pytest.fixture
def lms(tmp_path):
    """A static web server for the LMS page and packages: lms.url, lms.add(name, zip), lms.add_folder(name, dir)."""
    require_node_modules()
    from conftest import require
    require(SIMPLIFY_SCORM.is_file(), "simplify-scorm missing (make test-install runs npm ci in tests/browser)")
    root = tmp_path / "lms-root"
    root.mkdir()
    for name in ("lms.html", "lms.js"):
        shutil.copy(LMS_FILES / name, root / name)
    (root / "favicon.ico").write_bytes(b"")
    for name in ("scorm12.min.js", "scorm2004.min.js"):
        shutil.copy(SCORM_AGAIN / name, root / name)
    shutil.copy(SIMPLIFY_SCORM, root / "simplify-scorm.js")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Lms:
        url = f"http://localhost:{server.server_address[1]}"  # an allowed origin may be http:// only on localhost

        @staticmethod
        def add(name: str, data: bytes) -> str:
            folder = root / "pkg" / name
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(folder)
            return f"pkg/{name}"

        @staticmethod
        def add_folder(name: str, source: Path) -> str:
            """The content as it is, without any tracker: the baseline of a comparison."""
            shutil.copytree(source, root / "pkg" / name)
            return f"pkg/{name}"

        def page(self, version: str, launch: str | list[str], student_id="Jane@Example.com",
                 student_name="Doe, Jane", runtime="scorm-again", **extra):
            launch = "|".join([launch] if isinstance(launch, str) else launch)
            query = {"version": version, "runtime": runtime, "student_id": student_id,
                     "student_name": student_name, "launch": launch, **extra}
            return f"{self.url}/lms.html?{urlencode(query)}"

    yield Lms()
    server.shutdown()
    server.server_close()


@pytest.fixture
def context(browser):
    # The browser fixture trusts the tracking server's test certificate by its key.
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def build(client, version, server_url, content=None, title="Anti-Bribery") -> bytes:
    data, _ = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                     content=content, server_url=server_url, issued_by="test")
    return data


def wait_for(predicate, timeout=15.0, what="the server to count it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events() -> list[Event]:
    db.session.rollback()
    return db.session.scalars(select(Event).order_by(Event.id)).all()


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def watch(page, server_url: str) -> dict:
    """Collect the page's requests to the tracking server and their answers."""
    seen = {"requests": [], "statuses": [], "failed": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r) if r.url.startswith(server_url) else None)
    page.on("response", lambda r: seen["statuses"].append(r.status) if r.url.startswith(server_url) else None)
    page.on("requestfailed", lambda r: seen["failed"].append(r) if r.url.startswith(server_url) else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["errors"].append("dialog: " + d.message), d.dismiss()))
    return seen


def content_frame(page):
    page.wait_for_selector("#content")
    return page.frame_locator("#content")


# --- test content -------------------------------------------------------------------

PROBE_SCRIPT = r"""(function () {
  var q = new URLSearchParams(window.location.search);
  var lms = window.parent;
  var sco = document.documentElement.getAttribute("data-sco") || "sco";
  var n = q.get("v") === "1.2"
    ? { api: "API", init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
        commit: "LMSCommit", error: "LMSGetLastError", id: "cmi.core.student_id", name: "cmi.core.student_name",
        status: "cmi.core.lesson_status" }
    : { api: "API_1484_11", init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
        commit: "Commit", error: "GetLastError", id: "cmi.learner_id", name: "cmi.learner_name",
        status: q.get("status") === "passed" || q.get("status") === "failed" ? "cmi.success_status"
                                                                            : "cmi.completion_status" };
  var api = lms[n.api];
  function state(text) { document.getElementById("state").textContent = text; }
  function say(method) {
    var args = Array.prototype.slice.call(arguments, 1);
    var result = api[method].apply(api, args);
    lms.contentLog.push([sco, method + "(" + args.join(", ") + ")", result === undefined ? null : String(result)]);
    if (q.get("errors")) {
      var code = api[n.error]();
      lms.contentLog.push([sco, n.error + "()", code === undefined ? null : String(code)]);
      if (String(code) !== "0" && method === n.get) { state("error " + code); } // a course's alert box
    }
    return result;
  }
  function run() {
    say(n.init, "");
    if (q.get("learner")) { say(n.get, n.id); say(n.get, n.name); }
    say(n.get, n.status);
    if (q.get("status") && q.get("statusat") !== "unload") { say(n.set, n.status, q.get("status")); }
    say(n.commit, "");
    if (q.get("finish") === "now") { say(n.finish, ""); }
    state("done");
  }
  if (q.get("finish") === "unload") {
    window.addEventListener("unload", function () {
      if (q.get("status") && q.get("statusat") === "unload") { say(n.set, n.status, q.get("status")); }
      say(n.finish, "");
    });
  }
  var init = q.get("init") || "now";
  if (init === "now") { run(); }
  else if (init === "soon") { window.setTimeout(run, 500); }
  else if (init === "late") { window.setTimeout(run, 3000); }
  else { state("done"); }
})();
"""

PROBE_PAGE = """<!DOCTYPE html>
<html data-sco="{sco}"><head><meta charset="utf-8"><title>{sco}</title></head>
<body><p id="state">loading</p><script src="probe.js"></script></body></html>
"""

MULTI_SCO_1_2 = """<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="com.example.multi" version="1"
  xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2" xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <metadata><schema>ADL SCORM</schema><schemaversion>1.2</schemaversion></metadata>
  <organizations default="org"><organization identifier="org"><title>Multi</title>
    {items}
  </organization></organizations>
  <resources>{resources}
    <resource identifier="probe" type="webcontent" adlcp:scormtype="asset" href="probe.js"><file href="probe.js"/></resource>
  </resources>
</manifest>
"""

MULTI_SCO_2004 = """<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="com.example.multi" version="1"
  xmlns="http://www.imsglobal.org/xsd/imscp_v1p1" xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_v1p3">
  <metadata><schema>ADL SCORM</schema><schemaversion>2004 4th Edition</schemaversion></metadata>
  <organizations default="org"><organization identifier="org"><title>Multi</title>
    {items}
  </organization></organizations>
  <resources>{resources}
    <resource identifier="probe" type="webcontent" adlcp:scormType="asset" href="probe.js"><file href="probe.js"/></resource>
  </resources>
</manifest>
"""


def probe_content(folder: Path, scos: int = 0, version: str = "1.2", scormtype: str = "sco") -> Path:
    """The probe course in ``folder``: index.html alone, or ``scos`` SCOs sco1.html… with a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.js").write_text(PROBE_SCRIPT)
    if not scos:
        (folder / "index.html").write_text(PROBE_PAGE.format(sco="index"))
        return folder
    attr = "adlcp:scormtype" if version == "1.2" else "adlcp:scormType"
    items, resources = [], []
    for i in range(1, scos + 1):
        (folder / f"sco{i}.html").write_text(PROBE_PAGE.format(sco=f"sco{i}"))
        items.append(f'<item identifier="i{i}" identifierref="r{i}"><title>Part {i}</title></item>')
        resources.append(f'<resource identifier="r{i}" type="webcontent" {attr}="{scormtype}" href="sco{i}.html">'
                         f'<file href="sco{i}.html"/><dependency identifierref="probe"/></resource>')
    template = MULTI_SCO_1_2 if version == "1.2" else MULTI_SCO_2004
    (folder / "imsmanifest.xml").write_text(template.format(items="\n".join(items), resources="\n".join(resources)))
    return folder


def launch_query(version: str, **behaviour) -> str:
    return "?" + urlencode({"v": version, **behaviour})


def lms_state(page) -> dict:
    return page.evaluate("({calls: window.lmsCalls, violations: window.lmsViolations, content: window.contentLog,"
                         " log: window.lmsLog, records: window.lmsStored})")


def tracker_extras(tracked: list[dict], plain: list[dict]) -> list[tuple]:
    """The LMS calls made with the tracker that were not made without it, as (method, args)."""
    extra = Counter((c["method"], tuple(c["args"])) for c in tracked)
    extra.subtract(Counter((c["method"], tuple(c["args"])) for c in plain))
    return sorted(key for key, n in extra.items() for _ in range(n) if n > 0)
