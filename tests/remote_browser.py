"""What the remote-package browser tests share: the strict test LMS on its own origin, and
remote packages built for the live server's content origin.

The LMS is tests/tracker_lms.py's (the ``lms`` fixture, re-exported here): a real runtime
(scorm-again 1.2/2004, simplify-scorm 1.2) with the learner's data (and, to test resuming,
a bookmark and suspend data), which keeps records as a real LMS does, the SCORM 1.2 rule
that turns a finish without a status into "completed" included. It is served over plain
HTTP on http://localhost:PORT, another origin than the app (https://127.0.0.1:PORT) and
the content (https://localhost:LIVE_PORT).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import func, select
from tracker_lms import lms  # noqa: F401  (the strict test LMS, a fixture)

from app import packages
from app.extensions import db
from app.licensing import terms as licence_terms


def lms_log(page) -> list[str]:
    """The LMS calls that succeeded and change a session: Initialize, Commit, Finish/Terminate, in order."""
    return page.evaluate("""window.lmsCalls.filter(function (c) {
        return c.result === "true" && /^(LMS)?(Initialize|Commit|Finish|Terminate)$/.test(c.method);
      }).map(function (c) { return c.method.replace(/^LMS/, ""); })""")


def close_sco(page) -> None:
    """The LMS closes the SCO (its frame goes to about:blank), as when the learner leaves the course."""
    page.evaluate("document.getElementById('content').src = 'about:blank'")
    wait_for(lambda: page.evaluate("document.getElementById('content').contentWindow.location.href")
             == "about:blank", what="the LMS to close the SCO")


def lms_record(page, sco: int = 0) -> dict:
    """What the LMS stored for a SCO's attempt (the strict test LMS keeps it as a real LMS does)."""
    return page.evaluate(f"window.lmsRecord({sco})")


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


def block_new_learners_at(client, seats: int):
    """A licence term in force that blocks new learners at ``seats``: the content origin then serves the
    client's remote courses only under the seat grant the launcher obtains."""
    today = dt.datetime.now(dt.UTC).date()
    return licence_terms.add_term(db.session, client, actor="test", starts_on=today - dt.timedelta(days=30),
                                  ends_on=today + dt.timedelta(days=365), seat_limit=seats, at_limit="block")


def remote_pages(client, version, live_server, lms, tmp_path, name: str, pages: dict[str, str]) -> str:
    """A remote package of a course made of ``pages`` (file name to HTML), on the LMS: its launch path."""
    folder = tmp_path / name
    folder.mkdir()
    for file_name, html in pages.items():
        (folder / file_name).write_text(html)
    data, _ = build_remote(client, version, live_server, content=folder)
    return f"{lms.add(name, data)}/index.html"


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
    """The course's frame: LMS page > launcher (#content) > player (#remote-content) > course (#course)."""
    page.wait_for_selector("#content")
    return page.frame_locator("#content").frame_locator("#remote-content").frame_locator("#course")


def course_window(page, path_part: str):
    def find():
        return next((f for f in page.frames if path_part in f.url and f.url.startswith("https://localhost")), None)
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
