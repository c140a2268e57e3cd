"""What the remote-package browser tests share: a test LMS (scorm-again) on its own origin,
and remote packages built for the live server's content origin.

The LMS page runs scorm-again's Scorm12API or Scorm2004API with the learner's data (and,
to test resuming, a bookmark and suspend data) and opens a thin package in an iframe.
It is served over plain HTTP by a static server of the test on 127.0.0.1 (another origin
than the app, https://127.0.0.1:PORT, and the content, https://localhost:PORT).
"""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import threading
import time
import zipfile
from urllib.parse import urlencode

import pytest
from conftest import free_port
from scorm_content import SCORM_AGAIN, QuietHandler, require_node_modules
from sqlalchemy import func, select

from app.extensions import db
from app.services import packages

LMS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test LMS</title>
<script src="scorm12.min.js"></script><script src="scorm2004.min.js"></script>
<script src="lms.js"></script></head>
<body><h1>Test LMS</h1><iframe id="content" title="course" width="960" height="640"></iframe></body></html>
"""

LMS_SCRIPT = """(function () {
  "use strict";
  var q = new URLSearchParams(window.location.search);
  var v = q.get("version");
  window.lmsLog = [];
  var api;
  if (v === "1.2") {
    api = window.API = new window.Scorm12API({ logLevel: 5 });
    api.loadFromJSON({ core: { student_id: q.get("student_id"), student_name: q.get("student_name"),
                               lesson_location: q.get("location") || "", entry: q.get("location") ? "resume" : "ab-initio" },
                       suspend_data: q.get("suspend") || "" });
  } else {
    api = window.API_1484_11 = new window.Scorm2004API({ logLevel: 5 });
    api.loadFromJSON({ learner_id: q.get("student_id"), learner_name: q.get("student_name"),
                       location: q.get("location") || "", suspend_data: q.get("suspend") || "" });
  }
  var prefix = v === "1.2" ? "LMS" : "";
  ["Initialize", v === "1.2" ? "Finish" : "Terminate", "Commit"].forEach(function (event) {
    api.on(prefix + event, function () { window.lmsLog.push(event); });
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("content").src = q.get("launch");
  });
})();
"""


@pytest.fixture
def lms(tmp_path):
    """lms.url, lms.add(name, zip_bytes) -> folder, lms.page(version, launch, **query)."""
    require_node_modules()
    root = tmp_path / "lms-root"
    root.mkdir()
    (root / "lms.html").write_text(LMS_PAGE)
    (root / "lms.js").write_text(LMS_SCRIPT)
    (root / "favicon.ico").write_bytes(b"")
    for name in ("scorm12.min.js", "scorm2004.min.js"):
        shutil.copy(SCORM_AGAIN / name, root / name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class Lms:
        url = f"http://127.0.0.1:{server.server_address[1]}"

        @staticmethod
        def add(name: str, data: bytes) -> str:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(root / "pkg" / name)
            return f"pkg/{name}"

        def page(self, version: str, launch: str, student_id="Jane@Example.com", student_name="Doe, Jane", **extra):
            query = {"version": version, "student_id": student_id, "student_name": student_name,
                     "launch": launch, **extra}
            return f"{self.url}/lms.html?{urlencode(query)}"

    yield Lms()
    server.shutdown()
    server.server_close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def content_origin(live_server) -> str:
    return f"https://localhost:{live_server.port}"


def build_remote(client, version, live_server, content=None, title="Anti-Bribery"):
    """A remote package for the live server: its app origin, and its content origin by the other loopback name."""
    data, built = packages.package_bytes(db.session, client=client, course_title=title, scorm_version=version,
                                         content=content, mode="remote", server_url=live_server.url,
                                         content_url=content_origin(live_server), issued_by="test")
    return data, built


def wait_for(predicate, timeout=20.0, what="the server to count it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def watch(page) -> dict:
    """Script errors of every frame, CSP violations the browser reports, responses with a cookie."""
    seen = {"errors": [], "csp": [], "cookies": [], "statuses": {}}
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def console(message):
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            seen["csp"].append(text)
        elif message.type == "error" and "favicon" not in text:
            seen["errors"].append(text)

    page.on("console", console)

    def response(answer):
        seen["statuses"].setdefault(answer.status, []).append(answer.url)
        if "set-cookie" in answer.headers:
            seen["cookies"].append(answer.url)

    page.on("response", response)
    return seen


def course_frame(page):
    """The course's frame: LMS page > launcher (iframe #content) > course (iframe #remote-content)."""
    page.wait_for_selector("#content")
    return page.frame_locator("#content").frame_locator("#remote-content")


def course_window(page, path_part: str):
    def find():
        return next((f for f in page.frames if path_part in f.url and "localhost" in f.url), None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frame = find()
        if frame is not None:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"no course frame with {path_part!r}: {[f.url for f in page.frames]}")


def wait_in(frame, expression: str, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = frame.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {expression}")
