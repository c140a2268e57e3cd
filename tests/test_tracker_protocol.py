"""The tracker is invisible to the content and the LMS, on every runtime, and counts one launch per visit.

Each test runs the same probe content (tests/tracker_lms.py) twice in the strict test
LMS, once as it is and once built into a package with the tracker, on scorm-again (SCORM
1.2 and 2004) and simplify-scorm (1.2, a runtime whose last error sticks until another
error). It then asserts what the server stored, that the content saw exactly the same
answers and error codes both times, that neither run made a call out of protocol, and
that the only calls the tracker added are the ones its call-order rules allow
(scorm_package/tracker.js).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tracker_lms import (  # noqa: F401
    RUNTIME_IDS,
    RUNTIMES,
    build,
    content_frame,
    context,
    count,
    events,
    launch_query,
    lms,
    lms_state,
    probe_content,
    tracker_extras,
    wait_for,
    watch,
)

from app.extensions import db
from app.models import DailyUsage, Event, Learner
from app.packages import PackageError, package_bytes

# one_database: the tracker's SCORM calls in a browser.
pytestmark = pytest.mark.one_database

NAMES = {
    "1.2": {"init": "LMSInitialize", "finish": "LMSFinish", "get": "LMSGetValue", "error": "LMSGetLastError",
            "id": "cmi.core.student_id", "name": "cmi.core.student_name"},
    "2004": {"init": "Initialize", "finish": "Terminate", "get": "GetValue", "error": "GetLastError",
             "id": "cmi.learner_id", "name": "cmi.learner_name"},
}

BEHAVIOURS = {
    # content that initialises at once, reads GetLastError after every call and the learner itself
    "at-once": {"init": "now", "errors": "1", "learner": "1", "status": "completed", "finish": "now"},
    # before the tracker's own wait ends
    "soon": {"init": "soon", "errors": "1", "status": "completed", "finish": "now"},
    # after the tracker opened the session itself: it gets that session
    "late": {"init": "late", "errors": "1", "learner": "1", "status": "passed", "finish": "now"},
    # a course that talks SCORM but never initialises (its driver failed, the learner left first):
    # the tracker opens no session of its own, so nothing is counted and the LMS records nothing
    "never": {"init": "never"},
    # finishes in its unload handler, when the LMS moves on
    "finish-on-unload": {"init": "now", "errors": "1", "status": "completed", "finish": "unload"},
    # sets its status in its unload handler, after the page's "pagehide", then finishes
    "status-on-unload": {"init": "now", "errors": "1", "status": "completed", "statusat": "unload",
                         "finish": "unload"},
}


def reads(version: str) -> list[tuple]:
    """What the tracker's reading of the learner adds: GetLastError, ID, GetLastError, name, GetLastError."""
    n = NAMES[version]
    return sorted([(n["error"], ())] * 3 + [(n["get"], (n["id"],)), (n["get"], (n["name"],))])


def run(page, lms, version, runtime, launches: list[str]) -> dict:
    """Open the SCOs one after another in one LMS page (one visit), then leave the last one."""
    page.goto(lms.page(version, launches + ["about:blank"], runtime=runtime))
    for sco in range(len(launches)):
        if sco:
            page.evaluate("lmsNext()")
            page.wait_for_function(f"window.lmsSco === {sco}")
        content_frame(page).locator("#state", has_text="done").wait_for()
    return page


def leave(page) -> dict:
    page.evaluate("lmsNext()")  # unloads the SCO (its pagehide and unload run) and opens about:blank
    page.wait_for_function("window.lmsSco === window.lmsLaunches.length - 1")
    return lms_state(page)


def before_first_initialize(calls: list[dict], version: str) -> list[tuple]:
    init = NAMES[version]["init"]
    out = []
    for call in calls:
        if call["method"] == init:
            break
        out.append((call["method"], tuple(call["args"])))
    return out


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("runtime,version", RUNTIMES, ids=RUNTIME_IDS)
def test_content_sees_the_same_answers_with_and_without_the_tracker(
        runtime, version, behaviour, lms, context, live_server, make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    folder = probe_content(tmp_path / "course")
    tracked = lms.add("tracked", build(client, version, live_server.url, content=folder))
    plain = lms.add_folder("plain", folder)
    query = launch_query(version, **BEHAVIOURS[behaviour])
    status = BEHAVIOURS[behaviour].get("status")
    expected = [] if behaviour == "never" else ["launch"] + ([status] if status else [])

    states, seen = {}, {}
    for name, launch in (("plain", plain), ("tracked", tracked)):
        page = context.new_page()
        seen[name] = watch(page, live_server.url)
        run(page, lms, version, runtime, [f"{launch}/index.html{query}"])
        if name == "tracked":
            wait_for(lambda: count(Event) == (1 if "statusat" in BEHAVIOURS[behaviour] else len(expected)))
        states[name] = leave(page)
        page.close()
    wait_for(lambda: count(Event) == len(expected))

    assert sorted(e.kind for e in events()) == sorted(expected)
    plain_state, tracked_state = states["plain"], states["tracked"]
    if behaviour != "never":
        assert db.session.scalar(select(Learner.identity)) == "jane@example.com"
        assert db.session.scalar(select(DailyUsage.launches)) == 1
    # The content saw the very same answers and error codes, with no error dialog.
    assert tracked_state["content"] == plain_state["content"]
    assert seen["tracked"]["errors"] == seen["plain"]["errors"] == []
    # Nothing out of protocol, nothing before the session was open, only the reads the rules allow.
    assert tracked_state["violations"] == plain_state["violations"] == []
    assert before_first_initialize(tracked_state["calls"], version) == \
        before_first_initialize(plain_state["calls"], version)
    n = NAMES[version]
    # A course that never initialised: the tracker made no call at all, so it never read the learner
    # and cannot have billed anyone; the LMS holds no record.
    extra = [] if behaviour == "never" else reads(version)
    if behaviour == "never":
        assert count(Learner) == 0 and tracked_state["records"] == plain_state["records"] == {}
    assert tracker_extras(tracked_state["calls"], plain_state["calls"]) == extra
    assert [c["method"] for c in tracked_state["calls"]].count(n["init"]) == (0 if behaviour == "never" else 1)


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("runtime,version", RUNTIMES, ids=RUNTIME_IDS)
def test_tracker_makes_no_call_before_the_session_is_open(runtime, version, lms, context, live_server,
                                                          make_client, tmp_path):
    """Content that initialises half a second in: the LMS's first call must be that Initialize."""
    client, _ = make_client()
    launch = lms.add("course", build(client, version, live_server.url, content=probe_content(tmp_path / "c")))
    page = context.new_page()
    run(page, lms, version, runtime, [f"{launch}/index.html" + launch_query(version, init="soon", finish="now")])
    wait_for(lambda: count(Event) == 1)
    state = lms_state(page)
    assert state["violations"] == []
    assert state["calls"][0]["method"] == NAMES[version]["init"], state["calls"][:3]
    assert state["calls"][0]["result"] == "true"


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.parametrize("runtime,version", RUNTIMES, ids=RUNTIME_IDS)
def test_multi_sco_visit_is_one_launch_and_one_completion(runtime, version, lms, context, live_server,
                                                          make_client, tmp_path):
    client, _ = make_client(origins=[lms.url], local_http=True)  # a local http LMS: development only
    folder = probe_content(tmp_path / "multi", scos=3, version=version)
    tracked = lms.add("tracked", build(client, version, live_server.url, content=folder, title="Multi"))
    plain = lms.add_folder("plain", folder)
    scos = [("sco1", {"finish": "now"}), ("sco2", {"status": "completed", "finish": "unload", "errors": "1"}),
            ("sco3", {"status": "completed", "learner": "1", "finish": "now"})]

    states = {}
    for name, base in (("plain", plain), ("tracked", tracked)):
        page = context.new_page()
        launches = [f"{base}/{sco}.html" + launch_query(version, **behaviour) for sco, behaviour in scos]
        run(page, lms, version, runtime, launches)
        states[name] = leave(page)
        if name == "tracked":
            wait_for(lambda: count(Event) == 2)
        page.close()
    page = context.new_page()
    page.wait_for_timeout(500)  # let any late beacon of the visit arrive before counting
    assert sorted(e.kind for e in events()) == ["completed", "launch"]
    assert len({e.package_id for e in events()}) == 1
    usage = db.session.scalar(select(DailyUsage))
    assert (usage.launches, usage.completions) == (1, 1)
    assert states["tracked"]["content"] == states["plain"]["content"]
    assert states["tracked"]["violations"] == states["plain"]["violations"] == []
    assert tracker_extras(states["tracked"]["calls"], states["plain"]["calls"]) == sorted(reads(version) * 3)

    # Another tab is another visit: one more launch.
    run(page, lms, version, runtime, [f"{tracked}/sco1.html" + launch_query(version, finish="now")])
    wait_for(lambda: count(Event) == 3)
    wait_for(lambda: db.session.scalar(select(DailyUsage.launches)) == 2)


def test_asset_only_package_is_refused_with_what_to_do(make_client, tmp_path):
    client, _ = make_client()
    folder = probe_content(tmp_path / "assets", scos=2, scormtype="asset")
    with pytest.raises(PackageError, match="asset") as refused:
        package_bytes(db.session, client=client, course_title="Assets", scorm_version="1.2", content=folder,
                      server_url="https://track.example", issued_by="test")
    assert "index.html" in str(refused.value)
