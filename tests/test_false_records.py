"""No false record in the LMS: what the product adds never makes a completion, a score or a bill.

The strict test LMS keeps records as a real SCORM 1.2 LMS does: an LMSFinish with
cmi.core.lesson_status still "not attempted" stores "completed" (Moodle's rule). So a
deployed package whose tracker opens and closes a session of its own for a course that
never started leaves a completion the learner never earned (issue 19, seen in Moodle 4.5
with 3 of 3 learners on a page that never calls the API and 7 of 7 on the real Storyline
course left before its own LMSInitialize). These tests say what must happen instead:
no `completed`, no score, and no launch billed when the course never started; and a course
whose driver starts late runs exactly as it does without the tracker.
"""

from __future__ import annotations

import time

import pytest
from real_courses import BY_NAME, MODES, Setup, course_frame, open_scos, run_course, summary
from tracker_lms import (  # noqa: F401
    RUNTIME_IDS,
    RUNTIMES,
    build,
    context,
    events,
    launch_query,
    lms,
    lms_state,
    probe_content,
    wait_for,
)

# What the LMS records does not depend on the database.
pytestmark = pytest.mark.one_database

STATUS = {"1.2": "cmi.core.lesson_status", "2004": "cmi.completion_status"}
SCORES = ("cmi.core.score.raw", "cmi.score.raw", "cmi.score.scaled")
# What the beacons of a page that was left may still need to reach the server. Absence can only be
# shown by waiting a while; the tracker sends with keepalive fetch as the page goes.
BEACON_GRACE_MS = 1500


def leave(page) -> None:
    """The LMS closes the SCO: its frame goes to about:blank, so pagehide and unload run."""
    page.evaluate("lmsNext()")
    page.wait_for_function("window.lmsSco === window.lmsLaunches.length - 1")


def assert_no_false_record(record: dict, version: str, calls: list) -> None:
    status = record.get(STATUS[version])
    allowed = {None, "not attempted", "incomplete"} if version == "1.2" else {None, "unknown", "incomplete"}
    assert status in allowed, (f"the LMS stored {STATUS[version]}={status!r} for a course that never reported "
                               f"a status: record {record}, LMS calls {[(c['method'], c['args']) for c in calls]}")
    assert record.get("cmi.success_status") in (None, "unknown"), record
    assert not any(record.get(element) for element in SCORES), record


def launches_billed(page) -> list[str]:
    page.wait_for_timeout(BEACON_GRACE_MS)
    return [e.kind for e in events()]


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("left_after", ["3s", "30s"])
@pytest.mark.parametrize("runtime,version", RUNTIMES, ids=RUNTIME_IDS)
def test_deployed_course_that_never_initialises_leaves_no_completion_and_no_bill(
        runtime, version, left_after, lms, context, live_server, make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = lms.add("course", build(client, version, live_server.url, content=probe_content(tmp_path / "c")))
    page = context.new_page()
    if left_after == "30s":
        # 30 s of the page's timers (the tracker's setTimeout included) without waiting 30 s for real.
        page.clock.install()
    page.goto(lms.page(version, [f"{launch}/index.html" + launch_query(version, init="never"), "about:blank"],
                       runtime=runtime))
    page.frame_locator("#content").locator("#state", has_text="done").wait_for()
    if left_after == "30s":
        course = page.frames[1]
        before = course.evaluate("Date.now()")
        page.clock.run_for(30_000)
        assert course.evaluate("Date.now()") - before >= 30_000, "the clock did not reach the course's frame"
    else:
        page.wait_for_timeout(3_000)
    leave(page)
    state = lms_state(page)
    assert state["violations"] == []
    assert_no_false_record(page.evaluate("lmsRecord(0)"), version, state["calls"])
    assert launches_billed(page) == [], "a learner who never saw the course was billed"


STORYLINE = BY_NAME["storyline360-workplace-conflict-scorm12"]


def hold(context, pattern: str) -> list:
    """Requests matching ``pattern`` get no answer until ``release`` (a slow network or CDN)."""
    held: list = []

    def keep(route):
        held.append(route)

    context.route(pattern, keep)
    return held


def release(held: list) -> None:
    from playwright.sync_api import Error

    for route in held:
        try:
            route.continue_()
        except Error:
            pass  # its page is gone: the request was cancelled


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("left_after_ms", [500, 1000])
@pytest.mark.parametrize("runtime", ["scorm-again", "simplify-scorm"])
@pytest.mark.parametrize("mode", ["original", "deployed", "remote"])
def test_storyline_left_before_it_initialises_leaves_no_completion_and_no_bill(
        mode, runtime, left_after_ms, lms, context, live_server, make_client, tmp_path):
    """The real Storyline 1.2 course, left 0.5 s and 1 s after its launch page loaded, before its LMSInitialize.

    "Loaded" is the launch page's DOMContentLoaded (index_lms.html parsed, its scripts run: the page is
    there). Served locally, Storyline starts its driver about 0.6 s after that, once its player has fetched
    the course data (html5/data/js/data.js); in Moodle it had not at 1 s. So that "before its own
    LMSInitialize" holds on any machine, the course data is held back as a slow network would, and the
    test checks that SCORM Driver had indeed not started when the SCO was left. The original package
    is the baseline: it records nothing either.
    """
    from real_courses import require_real_courses

    require_real_courses()
    client, _ = make_client(origins=[lms.url], local_http=True)
    held = hold(context, "**/html5/data/js/data.js")
    launches = MODES[mode].install(Setup(lms, STORYLINE, tmp_path, client, live_server.url))
    page = context.new_page()
    open_scos(page, lms, STORYLINE, runtime, launches, wait_until="commit")  # its load waits for the data
    # The course's own launch page (in a remote package it is two frames below the LMS's launch).
    frame = course_frame(page, STORYLINE.launches()[0], "document.readyState !== 'loading'", 30,
                         "its DOMContentLoaded")
    page.wait_for_timeout(left_after_ms)
    course_started = frame.evaluate("typeof IsLoaded === 'function' && IsLoaded() === true")
    leave(page)
    release(held)
    state = lms_state(page)
    assert not course_started, f"Storyline had initialised {left_after_ms} ms after its page loaded"
    assert state["violations"] == []
    assert_no_false_record(page.evaluate("lmsRecord(0)"), "1.2", state["calls"])
    assert launches_billed(page) == [], "a learner who never saw the course was billed"


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["deployed", "remote"])
def test_closing_the_tab_before_the_course_starts_bills_nobody(mode, lms, context, live_server, make_client,
                                                               tmp_path):
    from real_courses import require_real_courses

    require_real_courses()
    client, _ = make_client(origins=[lms.url], local_http=True)
    held = hold(context, "**/html5/data/js/data.js")
    launches = MODES[mode].install(Setup(lms, STORYLINE, tmp_path, client, live_server.url))
    page = context.new_page()
    open_scos(page, lms, STORYLINE, "scorm-again", launches, wait_until="commit")
    course_frame(page, STORYLINE.launches()[0], "document.readyState !== 'loading'", 30, "its DOMContentLoaded")
    page.wait_for_timeout(500)
    page.close(run_before_unload=True)  # the learner closes the tab
    release(held)
    time.sleep(BEACON_GRACE_MS / 1000)
    assert [e.kind for e in events()] == [], "a learner who closed the tab before the course started was billed"


def delay_script(context, name: str, seconds: float) -> list[float]:
    """Answer every request for a file called ``name`` ``seconds`` late (a slow network or CDN)."""
    served: list[float] = []

    def slow(route):
        response = route.fetch()
        time.sleep(seconds)  # the route handler runs on the test's thread; the browser goes on meanwhile
        served.append(time.monotonic())
        route.fulfill(response=response)

    context.route(f"**/{name}", slow)
    return served


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("runtime", ["scorm-again", "simplify-scorm"])
@pytest.mark.parametrize("name", ["storyline360-workplace-conflict-scorm12", "rise360-bacon-scorm12"])
def test_course_whose_driver_starts_late_runs_as_without_the_tracker(name, runtime, lms, context, live_server,
                                                                     make_client, tmp_path):
    """scormdriver.js arrives 4 s late, after the tracker's own wait: the course runs as the original does."""
    from real_courses import require_real_courses

    require_real_courses()
    course = BY_NAME[name]
    client, _ = make_client(origins=[lms.url], local_http=True)
    served = delay_script(context, "scormdriver.js", 4.0)
    runs = {}
    for mode in ("original", "deployed"):
        launches = MODES[mode].install(Setup(lms, course, tmp_path, client, live_server.url))
        page = context.new_page()
        runs[mode] = run_course(page, lms, course, runtime, launches)
        page.close()
    assert len(served) == 2, "the driver was not delayed"
    original, deployed = runs["original"], runs["deployed"]
    assert original.violations == [] and deployed.violations == []
    assert deployed.errors == original.errors
    assert [summary(r, "1.2") for r in deployed.records] == [summary(r, "1.2") for r in original.records]
    wait_for(lambda: sorted(e.kind for e in events()) == ["completed", "launch"], what="one launch, one completion")
