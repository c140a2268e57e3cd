"""The tracker in a real browser, inside a real SCORM runtime, talking to the real server.

The test LMS (tests/tracker_lms.py, tests/browser/lms/) runs scorm-again's
Scorm12API or Scorm2004API with the learner's data behind a strict wrapper and
opens a built package in an iframe; beacons travel over HTTPS to gunicorn
(`live_server`). The protocol and multi-SCO tests are in test_tracker_protocol.py. Every test asserts
what the server stored, read from the database, not what the page shows.
"""

from __future__ import annotations

import io
import time

import pytest
from scorm_content import authoring_zip
from sqlalchemy import select
from tracker_lms import (  # noqa: F401 (fixtures)
    QUEUE_KEY,
    RUNTIME_IDS,
    RUNTIMES,
    build,
    content_frame,
    context,
    count,
    events,
    lms,
    wait_for,
    watch,
)

from app.extensions import db
from app.models import DailyUsage, Event, Learner

# one_database: the tracker in a browser.
pytestmark = [pytest.mark.browser, pytest.mark.one_database]


@pytest.mark.e2e
@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_launch_is_counted_once_with_completion(version, lms, context, live_server, make_client, screenshots_dir):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = lms.add("course", build(client, version, live_server.url))
    page = context.new_page()
    seen = watch(page, live_server.url)
    page.goto(lms.page(version, f"{launch}/index.html"))

    wait_for(lambda: count(Event) == 1)
    frame = content_frame(page)
    frame.locator("#next").click()
    frame.locator("#complete").click()
    wait_for(lambda: count(Event) == 2)
    page.screenshot(path=str(screenshots_dir / f"package-placeholder-scorm{version.replace('.', '')}.png"))

    stored = events()
    assert [e.kind for e in stored] == ["launch", "completed"]
    assert {e.scorm_version for e in stored} == {version}
    assert stored[0].lms_host == lms.url.split("://")[1]
    learner = db.session.scalar(select(Learner))
    assert (learner.identity, learner.name) == ("jane@example.com", "Doe, Jane")
    usage = db.session.scalar(select(DailyUsage))
    assert (usage.launches, usage.completions) == (1, 1)
    # The content's own session: initialised once (by the content), never twice.
    assert page.evaluate("window.lmsLog") == ["Initialize"]
    assert seen["errors"] == [] and seen["statuses"] == [204, 204]


@pytest.mark.e2e
def test_wrapped_authoring_package_reports_launch_and_results(lms, context, live_server, make_client):
    client, _ = make_client()
    launch = lms.add("ethics", build(client, "2004", live_server.url, content=io.BytesIO(authoring_zip("2004")),
                                     title="Ethics at Work"))
    page = context.new_page()
    seen = watch(page, live_server.url)
    page.goto(lms.page("2004", f"{launch}/course/story.html", student_id="E-1001", student_name="Roe, Rick"))

    wait_for(lambda: count(Event) == 3)
    assert sorted(e.kind for e in events()) == ["completed", "launch", "passed"]
    assert db.session.scalar(select(Learner.identity)) == "E-1001"
    # The course initialised the LMS session itself and it worked: the tracker did not take it.
    frame = next(f for f in page.frames if f.parent_frame is not None)
    assert frame.evaluate("window.courseInitialised") == "true"
    assert page.evaluate("window.API_1484_11.cmi.completion_status") == "completed"
    assert page.evaluate("window.lmsLog") == ["Initialize"]
    assert seen["errors"] == []


@pytest.mark.e2e
def test_launch_is_counted_when_the_page_navigates_away_at_once(lms, context, live_server, make_client):
    client, _ = make_client()
    launch = lms.add("course", build(client, "1.2", live_server.url))
    page = context.new_page()
    page.goto(lms.page("1.2", f"{launch}/index.html", leave="1"))
    page.wait_for_url("about:blank")
    wait_for(lambda: count(Event) == 1)
    assert count(DailyUsage) == 1


@pytest.mark.e2e
def test_beacon_lost_while_server_is_down_is_sent_on_next_launch_once(lms, context, live_server, make_client):
    client, _ = make_client()
    launch = lms.add("course", build(client, "2004", live_server.url))
    live_server.stop()

    page = context.new_page()
    seen = watch(page, live_server.url)
    page.goto(lms.page("2004", f"{launch}/index.html"))
    deadline = time.monotonic() + 10
    while not seen["failed"] and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(seen["failed"]) == 1, "the first launch should have tried and failed"
    first_event_id = seen["failed"][0].post_data_json["event_id"]
    page.close()

    live_server.start()
    second = context.new_page()
    seen = watch(second, live_server.url)
    second.goto(lms.page("2004", f"{launch}/index.html"))
    wait_for(lambda: count(Event) == 2)
    assert first_event_id in {str(e.event_id) for e in events()}
    second.wait_for_timeout(300)
    second.close()

    third = context.new_page()
    seen = watch(third, live_server.url)
    third.goto(lms.page("2004", f"{launch}/index.html"))
    wait_for(lambda: count(Event) == 3)
    third.wait_for_timeout(500)
    assert len(seen["requests"]) == 1, "the queue must be empty after the second launch"
    assert count(Learner) == 1
    assert db.session.scalar(select(DailyUsage.launches)) == 3
    assert third.evaluate(f"localStorage.getItem('{QUEUE_KEY}')") is None


@pytest.mark.e2e
def test_beacons_answered_503_or_429_are_kept_and_sent_again(lms, context, live_server, make_client):
    """Storage down (503) at the first launch, rate limited (429) at the second, all stored at the third."""
    client, _ = make_client()
    launch = lms.add("course", build(client, "1.2", live_server.url))
    beacons = live_server.url + "/api/v1/beacons"
    sent: list[str] = []
    for status in (503, 429, None):
        if status:
            def answer(route, request, status=status):
                sent.append(request.post_data_json["event_id"])
                route.fulfill(status=status, headers={"Access-Control-Allow-Origin": "*", "Retry-After": "5"},
                              content_type="application/json", body='{"error": "unavailable"}')

            context.route(beacons, answer)
        page = context.new_page()
        seen = watch(page, live_server.url)
        page.goto(lms.page("1.2", f"{launch}/index.html"))
        deadline = time.monotonic() + 10
        while len(seen["statuses"]) < (1 if status == 503 else 2) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        page.wait_for_timeout(200)
        page.close()
        context.unroute(beacons)
    wait_for(lambda: count(Event) == 3)
    assert {str(e.event_id) for e in events()} >= set(sent)
    assert count(Learner) == 1 and db.session.scalar(select(DailyUsage.launches)) == 3


@pytest.mark.e2e
def test_empty_student_id_is_refused_and_not_retried(lms, context, live_server, make_client):
    client, _ = make_client()
    launch = lms.add("course", build(client, "1.2", live_server.url))
    for attempt in range(2):
        page = context.new_page()
        seen = watch(page, live_server.url)
        page.goto(lms.page("1.2", f"{launch}/index.html", student_id=""))
        deadline = time.monotonic() + 10
        while not seen["statuses"] and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        page.wait_for_timeout(300)
        assert seen["statuses"] == [400], f"launch {attempt + 1}: one beacon, refused"
        assert page.evaluate(f"localStorage.getItem('{QUEUE_KEY}')") is None
        assert seen["errors"] == []
        content_frame(page).locator("#next").click()  # the course runs on
        page.close()
    assert count(Event) == 0


def test_perpetual_package_makes_no_request_to_any_server(lms, context, make_client):
    client, _ = make_client(licence="perpetual")
    launch = lms.add("course", build(client, "2004", "https://127.0.0.1:9"))
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(lms.url) else None)
    page.goto(lms.page("2004", f"{launch}/index.html"))
    content_frame(page).locator("#next").click()
    page.wait_for_timeout(1000)
    assert outside == []
    assert page.evaluate("window.lmsLog") == ["Initialize"]


def test_tracker_without_an_lms_api_stays_out_of_the_way(lms, context, make_client):
    """Opened outside any LMS (or an LMS without the API): the course runs, nothing thrown, nothing sent."""
    client, _ = make_client()
    launch = lms.add("course", build(client, "1.2", "https://127.0.0.1:9"))
    for url in (f"{lms.url}/{launch}/index.html", lms.page("1.2", f"{launch}/index.html", api="none")):
        page = context.new_page()
        outside, errors = [], []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(lms.url) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        frame = page if url.endswith("index.html") else content_frame(page)
        frame.locator("#next").click()
        frame.locator("#complete").click()
        page.wait_for_timeout(1000)
        assert (outside, errors) == ([], [])
        page.close()


LATE_PAGE = """<!DOCTYPE html><html><head><title>Late</title></head><body><p id="state">loading</p>
<script src="late.js"></script></body></html>"""
# Content whose SCORM calls the builder cannot see (its driver comes from elsewhere; the names are
# made at run time), so the tracker opens the session itself; the content then talks late.
LATE_SCRIPT = """window.setTimeout(function () {
  var api = window.parent["A" + "PI"], lms = "LMS";
  window.contentInit = String(api[lms + "Initialize"](""));
  window.contentSet = String(api[lms + "SetValue"]("cmi.core.lesson_status", "completed"));
  window.contentFinish = String(api[lms + "Finish"](""));
  document.getElementById("state").textContent = "done";
}, 2600);"""


@pytest.mark.e2e
def test_content_that_talks_unseen_gets_the_session_the_tracker_opened(lms, context, live_server, make_client,
                                                                        tmp_path):
    client, _ = make_client()
    folder = tmp_path / "late"
    folder.mkdir()
    (folder / "index.html").write_text(LATE_PAGE)
    (folder / "late.js").write_text(LATE_SCRIPT)
    launch = lms.add("late", build(client, "1.2", live_server.url, content=folder))
    page = context.new_page()
    page.goto(lms.page("1.2", f"{launch}/index.html"))

    wait_for(lambda: count(Event) == 1)  # content with no SCORM calls in its files counts from the tracker's session
    frame = content_frame(page)
    frame.locator("#state", has_text="done").wait_for()
    inner = next(f for f in page.frames if f.parent_frame is not None)
    assert inner.evaluate("[window.contentInit, window.contentSet, window.contentFinish]") == ["true", "true", "true"]
    # One real LMSInitialize (the tracker's), handed over; one LMSFinish (the content's).
    assert page.evaluate("window.lmsLog") == ["Initialize", "Finish"]
    assert page.evaluate("window.lmsRecord(0)") == {"cmi.core.lesson_status": "completed"}  # the content's own
    wait_for(lambda: count(Event) == 2)
    assert sorted(e.kind for e in events()) == ["completed", "launch"]


PLAIN_PAGE = """<!DOCTYPE html><html><head><title>Plain</title></head>
<body><p id="state">a page with no SCORM calls</p></body></html>"""


@pytest.mark.e2e
@pytest.mark.parametrize("runtime,version", RUNTIMES, ids=RUNTIME_IDS)
def test_content_with_no_scorm_calls_is_counted_and_never_recorded_completed(
        runtime, version, lms, context, live_server, make_client, tmp_path):
    client, _ = make_client()
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "index.html").write_text(PLAIN_PAGE)
    launch = lms.add("plain", build(client, version, live_server.url, content=folder))
    page = context.new_page()
    page.goto(lms.page(version, f"{launch}/index.html", runtime=runtime))
    wait_for(lambda: count(Event) == 1)  # the tracker's own session: the page was seen, so it counts
    page.evaluate("lmsNext()")  # the learner leaves
    page.wait_for_function("window.lmsSco === 1")
    assert page.evaluate("window.lmsLog") == ["Initialize", "Finish"]
    assert page.evaluate("window.lmsViolations") == []
    # The tracker's Finish never makes a 1.2 LMS record "completed": it records "incomplete" first.
    record = page.evaluate("window.lmsRecord(0)")
    assert record == ({"cmi.core.lesson_status": "incomplete"} if version == "1.2" else {})
    assert [e.kind for e in events()] == ["launch"]


# Remote packages in the browser: tests/test_remote_browser.py and tests/test_content_isolation.py.
