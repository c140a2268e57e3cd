"""Remote packages of authoring-tool-shaped courses in a real browser, inside a real SCORM runtime.

The test LMS (scorm-again) opens the thin package; its launcher frames the course from
the live server's content origin (https://localhost:PORT) while the app answers on
https://127.0.0.1:PORT. Each test asserts what the LMS runtime received and what the
server stored, and that no script error or CSP violation happened in any frame.
"""

from __future__ import annotations

import io

import pytest
from remote_browser import (  # noqa: F401  (fixtures)
    block_new_learners_at,
    build_remote,
    close_sco,
    context,
    count,
    course_frame,
    course_window,
    lms,
    lms_log,
    lms_record,
    remote_pages,
    wait_for,
    wait_in,
    watch,
)
from remote_courses import as_zip, captivate_multi, rise, storyline
from sqlalchemy import select

from app import packages
from app.extensions import db
from app.ingest.models import SeatlessBeacon
from app.models import DailyUsage, Event, Learner

# one_database: the launcher and the content origin in a browser.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]

SCORM_ERROR = {"1.2": {"write_only": "404", "bad_value": "405"}, "2004": {"write_only": "405", "bad_value": "406"}}


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_storyline_shaped_course_runs_remotely_and_reports_to_the_lms(version, lms, context, live_server,
                                                                      make_client, screenshots_dir):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    data, built = build_remote(client, version, live_server, content=io.BytesIO(as_zip(storyline(version))),
                               title="Storyline Course")
    assert built.warnings == []
    launch = lms.add("story", data)
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, f"{launch}/index.html", location="slide-1", suspend="X9-saved"))

    frame = course_frame(page)
    frame.locator("#state", has_text="slide 1").wait_for()
    course = course_window(page, "index_lms.html")
    # Inline scripts, eval, new Function, inline handlers and the player's own files all ran.
    assert course.evaluate("[window.evalRan, window.madeByFunction, window.userJsRan, window.bodyLoaded]") == \
        ["yes", 42, True, True]
    # The bookmark and suspend data the LMS holds reached the course; so did the learner's name.
    assert course.evaluate("[window.resumedFrom, window.resumedData, window.learnerName]") == \
        ["slide-1", "X9-saved", "Doe, Jane"]
    # The video is fetched by Range, as a player seeking does.
    assert wait_in(course, "window.rangeBytes") == 1000
    assert course.evaluate("[window.rangeStatus, window.rangeFirst]") == [206, 1000 % 256]
    # Error codes are the version's: a write-only element read, a bad vocabulary value set.
    assert course.evaluate("window.probeError") == SCORM_ERROR[version]["write_only"]
    lms_string = page.evaluate(f"window.{'API.LMSGetErrorString' if version == '1.2' else 'API_1484_11.GetErrorString'}"
                               f"('{SCORM_ERROR[version]['write_only']}')")
    assert course.evaluate("window.probeString") == lms_string and lms_string
    assert course.evaluate("window.badStatusError") == SCORM_ERROR[version]["bad_value"]

    wait_for(lambda: count(Event) >= 1)
    frame.locator("#next").click()
    frame.locator("#state", has_text="slide 2").wait_for()
    frame.locator("#finish").click()
    frame.locator("#state", has_text="finished").wait_for()
    page.screenshot(path=str(screenshots_dir / f"remote-storyline-scorm{version.replace('.', '')}.png"))

    cmi = "window.API.cmi" if version == "1.2" else "window.API_1484_11.cmi"
    if version == "1.2":
        wait_for(lambda: page.evaluate(f"{cmi}.core.lesson_status") == "passed", what="the LMS to get the status")
        assert page.evaluate(f"[{cmi}.core.lesson_location, {cmi}.suspend_data, {cmi}.core.score.raw]") == \
            ["slide-2", "A1B2C3-resume-here", "87"]
        assert lms_log(page) == ["Initialize", "Commit", "Commit", "Finish"]
    else:
        wait_for(lambda: page.evaluate(f"{cmi}.success_status") == "passed", what="the LMS to get the status")
        assert page.evaluate(f"[{cmi}.completion_status, {cmi}.location, {cmi}.suspend_data, {cmi}.score.raw, "
                             f"{cmi}.score.scaled]") == ["completed", "slide-2", "A1B2C3-resume-here", "87", "0.87"]
        assert lms_log(page) == ["Initialize", "Commit", "Commit", "Terminate"]
    # Counted as one launch and one completion; nothing refused, nothing broke.
    expected = ["launch", "passed"] if version == "1.2" else ["completed", "launch", "passed"]
    wait_for(lambda: sorted(db.session.scalars(select(Event.kind))) == expected, what="launch and results stored")
    assert db.session.scalar(select(DailyUsage.launches)) == 1
    # The LMS host is the LMS the learner was in, not the content origin the beacon came from.
    assert set(db.session.scalars(select(Event.lms_host))) == {lms.url.split("://", 1)[1]}
    assert (seen["errors"], seen["csp"], seen["cookies"]) == ([], [], [])
    assert 206 in seen["statuses"] and not any(s >= 400 for s in seen["statuses"])


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_rise_shaped_course_with_its_launch_page_in_a_subfolder(version, lms, context, live_server, make_client):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    data, _ = build_remote(client, version, live_server, content=io.BytesIO(as_zip(rise(version))),
                           title="Rise Course")
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, f"{lms.add('rise', data)}/index.html"))
    inner = course_frame(page).frame_locator("#scormcontent")
    inner.locator("#state", has_text="lesson ready").wait_for()
    lesson = course_window(page, "scormcontent/index.html")
    assert lesson.evaluate("window.initResult") == "true"
    assert wait_in(lesson, "window.blobImage") == "loaded"
    inner.locator("#complete").click()
    inner.locator("#state", has_text="done").wait_for()
    status = "window.API.cmi.core.lesson_status" if version == "1.2" else "window.API_1484_11.cmi.completion_status"
    wait_for(lambda: page.evaluate(status) == "completed", what="the LMS to get the status")
    wait_for(lambda: db.session.scalar(select(DailyUsage.completions)) == 1)
    assert db.session.scalar(select(DailyUsage.launches)) == 1
    assert (seen["errors"], seen["csp"], seen["cookies"]) == ([], [], [])


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_multi_sco_items_share_one_launch_file_and_open_with_their_own_query(version, lms, context, live_server,
                                                                            make_client):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    data, _ = build_remote(client, version, live_server, content=io.BytesIO(as_zip(captivate_multi(version))),
                           title="Lessons")
    launch = lms.add("lessons", data)
    status = "window.API.cmi.core.lesson_status" if version == "1.2" else "window.API_1484_11.cmi.completion_status"
    for n, expected in enumerate(["lesson 1 mode intro", "lesson 2 mode quiz", "lesson 3 mode summary"]):
        page = context.new_page()
        seen = watch(page)
        page.goto(lms.page(version, f"{launch}/index.html?sco={n}"))
        frame = course_frame(page)
        frame.locator("#state", has_text=expected).wait_for()
        frame.locator("#done").click()
        frame.locator("#state", has_text=f"lesson {n + 1} done").wait_for()
        wait_for(lambda: page.evaluate(status) == "completed", what="the LMS to get the SCO's status")
        assert (seen["errors"], seen["csp"], seen["cookies"]) == ([], [], [])
        page.close()
    wait_for(lambda: db.session.scalar(select(DailyUsage.completions)) or 0)
    assert count(DailyUsage) == 1  # one learner, one course, one day


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_republish_shows_at_the_next_launch(version, lms, context, live_server, make_client):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    data, built = build_remote(client, version, live_server, content=io.BytesIO(as_zip(storyline(version, "v1"))))
    launch = lms.add("story", data)
    page = context.new_page()
    page.goto(lms.page(version, f"{launch}/index.html"))
    course_frame(page).locator("#state", has_text="slide 1").wait_for()
    assert course_window(page, "index_lms.html").evaluate("document.title") == "Storyline course v1"
    page.close()

    packages.republish(db.session, package_id=built.issue.package_id,
                       content=io.BytesIO(as_zip(storyline(version, "v2"))), actor="test")
    again = context.new_page()
    seen = watch(again)
    again.goto(lms.page(version, f"{launch}/index.html"))
    course_frame(again).locator("#state", has_text="slide 1").wait_for()
    assert course_window(again, "index_lms.html").evaluate("document.title") == "Storyline course v2"
    wait_for(lambda: db.session.scalar(select(DailyUsage.launches)) == 2)
    assert (seen["errors"], seen["csp"]) == ([], [])


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_a_new_learner_past_a_blocking_limit_sees_the_polite_page_and_nothing_is_counted(
        version, lms, context, live_server, make_client, screenshots_dir):
    client, key = make_client(name="Acme Learning", origins=[lms.url], local_http=True)
    block_new_learners_at(client, seats=1)
    data, built = build_remote(client, version, live_server, content=io.BytesIO(as_zip(storyline(version))))
    launch = lms.add("story", data)
    # Ann holds the one seat: the launcher obtained a seat grant, the course opened under it, and
    # the beacon carrying it took her seat (one without it would have been set aside).
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, f"{launch}/index.html", student_id="ann@example.com", student_name="Ann"))
    course_frame(page).locator("#state", has_text="slide 1").wait_for()
    assert f"/{built.issue.package_id}/g/" in course_window(page, "index_lms.html").url
    wait_for(lambda: count(DailyUsage) == 1)
    assert count(SeatlessBeacon) == 0
    assert (seen["errors"], seen["csp"], seen["cookies"]) == ([], [], [])
    page.close()

    # Skipping the launcher: the course's own address refuses the course, and says what to do.
    page = context.new_page()
    page.goto(built.content_url)
    page.locator("h1", has_text="Open this course from your LMS").wait_for()
    page.close()

    # Bob is new: the polite page, inside the LMS frame; nothing counted, and the course never
    # started, so the launcher leaves the LMS record as it was (no Finish: a 1.2 LMS would make it "completed").
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, f"{launch}/index.html", student_id="bob@example.com", student_name="Bob"))
    limit_page = page.frame_locator("#content").frame_locator("#remote-content")  # framed instead of the player
    limit_page.locator("h1", has_text="not available to new learners").wait_for()
    assert "Acme Learning has used every seat" in limit_page.locator("main").inner_text()
    page.screenshot(path=str(screenshots_dir / f"remote-licence-limit-scorm{version.replace('.', '')}.png"))
    close_sco(page)
    assert lms_log(page) == ["Initialize"]
    assert lms_record(page) == {}
    assert (seen["errors"], seen["csp"], seen["cookies"]) == ([], [], [])
    page.close()

    # Ann comes back: a learner already counted is never refused.
    page = context.new_page()
    page.goto(lms.page(version, f"{launch}/index.html", student_id="ann@example.com", student_name="Ann"))
    course_frame(page).locator("#state", has_text="slide 1").wait_for()
    wait_for(lambda: db.session.scalar(select(DailyUsage.launches)) == 2, what="Ann's second launch")
    assert count(DailyUsage) == 1
    assert db.session.scalars(select(Learner.identity)).all() == ["ann@example.com"]


LMS_REFUSES = """<!DOCTYPE html><html><head><title>Strict</title></head><body><p id="state">loading</p>
<script>
  var v12 = !!window.parent.API, api = window.parent.API || window.parent.API_1484_11;
  var n = v12 ? {init: "LMSInitialize", set: "LMSSetValue", get: "LMSGetValue", err: "LMSGetLastError",
                 str: "LMSGetErrorString", diag: "LMSGetDiagnostic", commit: "LMSCommit"}
              : {init: "Initialize", set: "SetValue", get: "GetValue", err: "GetLastError", str: "GetErrorString",
                 diag: "GetDiagnostic", commit: "Commit"};
  var element = v12 ? "cmi.core.lesson_location" : "cmi.location";
  window.results = {beforeInit: [api[n.get](element), api[n.err]()]};
  api[n.init]("");
  window.results.secondInit = [api[n.init](""), api[n.err]()];
  api[n.set](element, "page-3");
  api[n.set](element, new Array(5000).join("x"));  // longer than the LMS allows
  setTimeout(function () {
    var code = api[n.err]();
    window.results.refused = [code, api[n.str](code), api[n.diag](code), api[n.get](element)];
    document.getElementById("state").textContent = "checked";
  }, 1500);
</script></body></html>"""


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_the_lmss_own_error_codes_strings_and_diagnostics_reach_the_course(version, lms, context, live_server,
                                                                           make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = remote_pages(client, version, live_server, lms, tmp_path, "strict", {"index.html": LMS_REFUSES})
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, launch))
    course_frame(page).locator("#state", has_text="checked").wait_for()
    results = course_window(page, "/index.html").evaluate("window.results")
    assert results["beforeInit"] == ["", "301" if version == "1.2" else "122"]
    assert results["secondInit"] == ["false", "101" if version == "1.2" else "103"]
    code, string, diagnostic, value = results["refused"]
    # What the LMS itself answers for the same call, asked directly afterwards.
    api = "window.API" if version == "1.2" else "window.API_1484_11"
    names = ("LMSSetValue", "LMSGetLastError", "LMSGetErrorString") if version == "1.2" else \
        ("SetValue", "GetLastError", "GetErrorString")
    element = "cmi.core.lesson_location" if version == "1.2" else "cmi.location"
    own_code, own_string = page.evaluate(
        f"(() => {{ {api}.{names[0]}('{element}', new Array(5000).join('x')); "
        f"var c = {api}.{names[1]}(); return [c, {api}.{names[2]}(c)]; }})()")
    assert own_code != "0" and (code, string) == (own_code, own_string)
    assert diagnostic  # the LMS's diagnostic text, passed through
    assert value == "page-3" and page.evaluate(f"{api}.cmi.{'core.lesson_location' if version == '1.2' else 'location'}") == "page-3"
    assert seen["errors"] == [] and seen["csp"] == []


NEVER_CALLS_SCORM = """<!DOCTYPE html><html><head><title>Quiet</title></head>
<body><p id="state">a page that never calls the API</p></body></html>"""


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_a_page_with_no_scorm_calls_is_counted_and_the_lms_never_records_a_completion(
        version, lms, context, live_server, make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = remote_pages(client, version, live_server, lms, tmp_path, "quiet", {"index.html": NEVER_CALLS_SCORM})
    page = context.new_page()
    page.goto(lms.page(version, launch))
    course_frame(page).locator("#state").wait_for()
    # The tracker opens the player's session itself for content with no SCORM calls: still one launch.
    wait_for(lambda: count(Event) == 1, what="the launch of a page with no SCORM calls")
    close_sco(page)  # the learner closes the course
    finish = "Finish" if version == "1.2" else "Terminate"
    assert lms_log(page) == ["Initialize", finish]
    record = lms_record(page)
    # 1.2: "incomplete" set before the finish, or the LMS would store "completed"; 2004 sets nothing.
    assert record == ({"cmi.core.lesson_status": "incomplete"} if version == "1.2" else {})


# --- no false record: courses that never start ---------------------------------------

DRIVER_MISSING = """<!DOCTYPE html><html><head><title>Broken</title>
<script src="lms/scormdriver.js"></script></head>
<body><p id="state">the driver did not load</p>
<script>if (window.SCORM_Start) { window.SCORM_Start(); /* calls LMSInitialize */ }</script></body></html>"""


@pytest.mark.parametrize("runtime", ["scorm-again", "simplify-scorm"])
def test_a_course_whose_driver_cannot_load_leaves_the_lms_record_untouched_and_is_not_billed(
        runtime, lms, context, live_server, make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = remote_pages(client, "1.2", live_server, lms, tmp_path, "broken", {"index.html": DRIVER_MISSING})
    page = context.new_page()
    page.goto(lms.page("1.2", launch, runtime=runtime))
    course_frame(page).locator("#state").wait_for()
    page.wait_for_timeout(3000)  # past the tracker's old 2 s self-open: nothing may happen on its own
    close_sco(page)
    # The launcher opened the LMS session to read the learner, then left it alone: no Finish, which a 1.2
    # LMS would turn into "completed" with nothing set; the course never started, so nobody is billed.
    assert lms_log(page) == ["Initialize"]
    assert lms_record(page) == {} and page.evaluate("window.lmsViolations") == []
    assert count(Event) == 0


@pytest.mark.parametrize("version", ["1.2", "2004"])
def test_a_player_refused_by_frame_ancestors_leaves_no_record_and_no_bill(version, lms, context, live_server,
                                                                         make_client, screenshots_dir):
    # The client allows another LMS only: the content origin refuses to be framed by this one.
    client, _ = make_client(origins=["https://lms.elsewhere.example"])
    data, _built = build_remote(client, version, live_server, content=io.BytesIO(as_zip(storyline(version))))
    page = context.new_page()
    seen = watch(page)
    page.goto(lms.page(version, f"{lms.add('story', data)}/index.html"))
    # Playwright delivers the page's events while it runs a call of its own: poll through it.
    for _ in range(150):
        if any("/scorm-player.html" in url for url in sum(seen["statuses"].values(), [])):
            break
        page.wait_for_timeout(200)
    else:
        raise AssertionError(f"the player was never asked for: {seen}")
    page.wait_for_timeout(3000)
    close_sco(page)
    assert lms_log(page) == ["Initialize"]
    assert lms_record(page) == {}
    assert count(Event) == 0


POPUP_LAUNCH = """<!DOCTYPE html><html><head><title>Opens a window</title></head>
<body><p id="state">ready</p><button id="open" onclick="window.open('popup.html', 'lesson')">Open the lesson</button>
<script>var courseInit = "LMSInitialize is called by the popup";</script></body></html>"""

# pipwerks-style: the popup has no parent with an API, so it searches its opener's parents.
POPUP_PAGE = """<!DOCTYPE html><html><head><title>Lesson</title></head><body><p id="state">lesson</p>
<script>
  function find(w) { for (var i = 0; w && i < 10; i++) { if (w.API) { return w.API; }
    if (w.parent === w) { break; } w = w.parent; } return null; }
  var api = find(window.parent) || find(window.opener);
  window.result = [api.LMSInitialize(""), api.LMSSetValue("cmi.core.lesson_status", "completed"),
                   api.LMSCommit(""), api.LMSFinish("")];
  document.getElementById("state").textContent = "done";
</script></body></html>"""


def test_a_popup_the_course_opens_finds_the_api_through_its_opener(lms, context, live_server, make_client,
                                                                   tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    launch = remote_pages(client, "1.2", live_server, lms, tmp_path, "popup",
                          {"index.html": POPUP_LAUNCH, "popup.html": POPUP_PAGE})
    page = context.new_page()
    page.goto(lms.page("1.2", launch))
    course_frame(page).locator("#state", has_text="ready").wait_for()
    with page.expect_popup() as opened:
        course_frame(page).locator("#open").click()
    popup = opened.value
    popup.locator("#state", has_text="done").wait_for()
    assert popup.evaluate("window.result") == ["true", "true", "true", "true"]
    wait_for(lambda: lms_log(page) == ["Initialize", "Commit", "Finish"], what="the LMS to get the popup's calls")
    assert lms_record(page) == {"cmi.core.lesson_status": "completed"}
    wait_for(lambda: sorted(db.session.scalars(select(Event.kind))) == ["completed", "launch"])


def test_a_beacon_the_server_could_not_take_is_kept_by_the_lms_origin_and_sent_at_the_next_launch(
        lms, context, live_server, make_client):
    # The player's own storage is a third party's under the LMS: the launcher keeps the queue instead.
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    data, _built = build_remote(client, "1.2", live_server, content=io.BytesIO(as_zip(storyline("1.2"))))
    launch = lms.add("story", data)
    beacons = live_server.url + "/api/v1/beacons"
    refused: list[str] = []

    def unavailable(route, request):
        refused.append(request.post_data_json["event_id"])
        route.fulfill(status=503, headers={"Access-Control-Allow-Origin": "*", "Retry-After": "5"},
                      content_type="application/json", body='{"error": "unavailable"}')

    context.route(beacons, unavailable)
    page = context.new_page()
    page.goto(lms.page("1.2", f"{launch}/index.html", student_id="ann@example.com"))
    course_frame(page).locator("#state", has_text="slide 1").wait_for()
    launcher = page.frame_locator("#content")
    for _ in range(100):  # until the launch was refused and the launcher holds it
        if refused and launcher.locator("body").evaluate(
                "() => (localStorage.getItem('scormUsageTracker.queue.v1') || '').indexOf('event_id') >= 0"):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError(f"the refused launch was not kept by the launcher (refused: {refused})")
    page.close()
    context.unroute(beacons)
    assert count(Event) == 0

    # Bob's launch the next day (or minute) on the same browser sends Ann's kept launch first.
    page = context.new_page()
    page.goto(lms.page("1.2", f"{launch}/index.html", student_id="bob@example.com", student_name="Bob"))
    course_frame(page).locator("#state", has_text="slide 1").wait_for()
    wait_for(lambda: count(Event) == 2, what="the kept launch and the new one")
    assert str(refused[0]) in {str(e.event_id) for e in db.session.scalars(select(Event))}
    assert sorted(db.session.scalars(select(Learner.identity))) == ["ann@example.com", "bob@example.com"]
    for _ in range(50):  # sent, so no longer kept
        if launcher_queue(page) is None:
            break
        page.wait_for_timeout(100)
    assert launcher_queue(page) is None


def launcher_queue(page):
    return page.frame_locator("#content").locator("body").evaluate(
        "() => localStorage.getItem('scormUsageTracker.queue.v1')")
