"""Real SCORM courses in the strict test LMS: the table, and how to run one to its own end.

The courses are real exports nobody here wrote (../shared/real-courses/, see its
SOURCES.txt), read from that folder as they are. A course runs in a *mode*:

- ``original``: the export unzipped into the LMS as it is, no tracker (the baseline);
- ``deployed``: the deployed package the product builds from the export's zip;
- ``remote``: the remote package built from the export: the thin launcher in the LMS, the
  player and the course from the live server's content origin (https://localhost:PORT);
  the course's own frame is found the same way, by the path of its launch page
  (``course_frame`` searches every frame of the page, however deep, whatever its origin).

``run_course`` opens each SCO in the LMS page one after another (the LMS's own navigation,
``lmsNext``), drives it to its own end the way a learner would, then leaves the last one
the way an LMS closing the SCO does (the LMS page navigates its #content frame to
about:blank, so the course's unload handlers run), and returns what the LMS stored per SCO
(``lmsRecord``), the calls and the protocol violations.

How each kind of course is driven to its end:
- ``golf`` (Rustici golf examples, one launch page framing content pages): the course's
  own Next (``doNext()`` in the launch page) until the last page (``currentPage`` is
  ``pageArray.length - 1``; the course sets its completion there); when that page is the
  knowledge check, answer it right and submit it (the course's ``SubmitAnswers()``,
  which reports the score and passed to the launch page's ``RecordTest``).
- ``golf-page`` (golf multi-SCO: one SCO per page, LMSInitialize on load, LMSFinish on
  unload, no status set): the page is the whole SCO; it is opened and left.
- ``driver`` (Rise 360, Storyline 360, Captivate: Rustici SCORM Driver inside): wait
  for the driver to be loaded (its ``IsLoaded()``, after its own Initialize), then
  ``SetReachedEnd()`` in the frame that loaded scormdriver.js (the launch page itself in
  all three).
- ``ispring`` (iSpring 10 player): see ``_drive_ispring``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from conftest import ROOT, require

from app.packages import read_scos

REAL_COURSES = ROOT.parent / "shared" / "real-courses"

# What the comparison looks at, per SCORM version: exact values, and elements compared by presence.
EXACT = {
    "1.2": ("cmi.core.lesson_status", "cmi.core.score.raw"),
    "2004": ("cmi.completion_status", "cmi.success_status", "cmi.score.raw", "cmi.score.scaled",
             "cmi.progress_measure"),
}
PRESENT = {
    "1.2": ("cmi.core.lesson_location", "cmi.suspend_data", "cmi.core.session_time"),
    "2004": ("cmi.location", "cmi.suspend_data", "cmi.session_time"),
}
STATUS_ELEMENTS = {"1.2": ("cmi.core.lesson_status",), "2004": ("cmi.completion_status", "cmi.success_status")}
INIT = {"1.2": "LMSInitialize", "2004": "Initialize"}
SET = {"1.2": "LMSSetValue", "2004": "SetValue"}
EVENT_OF_STATUS = {"completed": "completed", "passed": "passed", "failed": "failed"}


@dataclass(frozen=True)
class RealCourse:
    name: str        # the zip's name without .zip
    version: str     # SCORM version of its manifest
    drive: str       # golf | golf-page | driver | ispring
    heavy: bool = False  # an authoring tool's player: generous waits
    notes: str = ""

    @property
    def zip(self) -> Path:
        return REAL_COURSES / f"{self.name}.zip"

    def launches(self) -> list[str]:
        """The SCO launch hrefs (with query strings) of the manifest, in organisation order."""
        with zipfile.ZipFile(self.zip) as archive:
            _, scos, _ = read_scos(archive.read("imsmanifest.xml"))
        return [sco.href for sco in scos]

    @property
    def runtimes(self) -> list[str]:
        return ["scorm-again", "simplify-scorm"] if self.version == "1.2" else ["scorm-again"]


COURSES = [
    RealCourse("golf12-RuntimeBasicCalls", "1.2", "golf"),
    RealCourse("golf12-RuntimeMinimumCalls-multisco", "1.2", "golf-page",
               notes="18 SCOs that set no status: a 1.2 LMS stores 'completed' at each LMSFinish"),
    RealCourse("golf2004-RuntimeBasicCalls", "2004", "golf"),
    RealCourse("golf2004-SequencingSimpleRemediation", "2004", "golf",
               notes="8 items, 5 SCOs sharing shared/launchpage.html told apart by ?content="),
    RealCourse("rise360-bacon-scorm12", "1.2", "driver", heavy=True),
    RealCourse("storyline360-workplace-conflict-scorm12", "1.2", "driver", heavy=True),
    RealCourse("captivate-chapter1-scorm12", "1.2", "driver", heavy=True),
    RealCourse("ispring-scorm2004-4th", "2004", "ispring", heavy=True),
]
BY_NAME = {course.name: course for course in COURSES}
ASSET_ONLY = "golf12-ContentPackagingOneFilePerSCO"


def require_real_courses() -> None:
    require(REAL_COURSES.is_dir() and all(c.zip.is_file() for c in COURSES),
            f"the real courses are missing ({REAL_COURSES}, see the issue's SOURCES.txt)")


def course_params():
    """(course, runtime) pairs for pytest.mark.parametrize, with readable ids."""
    import pytest

    return [pytest.param(c, r, id=f"{c.name}-{r}-{c.version}") for c in COURSES for r in c.runtimes]


# --- modes: how a course gets into the LMS ------------------------------------------


@dataclass
class Setup:
    lms: object
    course: RealCourse
    tmp_path: Path
    client: object = None
    server_url: str = ""


@dataclass(frozen=True)
class Mode:
    name: str
    install: Callable[[Setup], list[str]]  # -> LMS-relative launch URL per SCO
    tracked: bool = True


def unpack(course: RealCourse, folder: Path) -> Path:
    with zipfile.ZipFile(course.zip) as archive:
        archive.extractall(folder)
    return folder


def _original(setup: Setup) -> list[str]:
    base = setup.lms.add_folder("original", unpack(setup.course, setup.tmp_path / "original-src"))
    return [f"{base}/{href}" for href in setup.course.launches()]


def _deployed(setup: Setup) -> list[str]:
    from tracker_lms import build

    data = build(setup.client, setup.course.version, setup.server_url, content=setup.course.zip,
                 title=setup.course.name)
    base = setup.lms.add("deployed", data)
    return [f"{base}/{href}" for href in setup.course.launches()]


def _remote(setup: Setup) -> list[str]:
    from app import packages
    from app.extensions import db

    content_url = setup.server_url.replace("127.0.0.1", "localhost")  # the content origin: the other loopback name
    data, built = packages.package_bytes(db.session, client=setup.client, course_title=setup.course.name,
                                         scorm_version=setup.course.version, content=setup.course.zip,
                                         mode="remote", server_url=setup.server_url, content_url=content_url,
                                         issued_by="test")
    base = setup.lms.add("remote", data)
    return [f"{base}/index.html?sco={n}" for n in range(len(built.launch_files))]


MODES = {"original": Mode("original", _original, tracked=False), "deployed": Mode("deployed", _deployed),
         "remote": Mode("remote", _remote)}


# --- frames ---------------------------------------------------------------------------


def _path_of(href: str) -> str:
    return urlsplit(href).path


def find_frames(page, launch: str) -> list:
    """Every frame of the page (nested at any depth, any origin) showing ``launch``'s page."""
    path = "/" + _path_of(launch).lstrip("/")
    out = []
    for frame in page.frames:
        try:
            if urlsplit(frame.url).path.endswith(path):
                out.append(frame)
        except ValueError:
            continue
    return out


def course_frame(page, launch: str, ready: str = "true", timeout: float = 30.0, what: str = ""):
    """The frame showing ``launch`` (a path, query ignored) once ``ready`` is true in it."""
    import time

    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout
    while True:
        for frame in find_frames(page, launch):
            try:
                if frame.evaluate(f"() => !!({ready})"):
                    return frame
            except Error:
                pass  # navigating, or detached: look again
        if time.monotonic() > deadline:
            urls = [f.url for f in page.frames]
            raise AssertionError(f"no frame of {launch!r} where {what or ready} within {timeout:.0f} s; "
                                 f"frames: {urls}")
        page.wait_for_timeout(100)


def initialized_by_course(page, sco: int, version: str) -> bool:
    """The LMS saw a successful Initialize for SCO ``sco`` (the course's, or the tracker's)."""
    return page.evaluate(
        "([sco, init]) => window.lmsCalls.some(c => c.sco === sco && c.method === init && c.result === 'true')",
        [sco, INIT[version]])


# --- driving a course to its end -------------------------------------------------------

ANSWER_GOLF_TEST = """() => {
  for (var i in test.Questions) {
    var q = test.Questions[i];
    if (q.Type === QUESTION_TYPE_CHOICE) {
      for (var a = 0; a < q.Answers.length; a++) {
        if (q.Answers[a] == q.CorrectAnswer) { document.getElementById("question_" + q.Id + "_" + a).checked = true; }
      }
    } else if (q.Type === QUESTION_TYPE_TF) {
      document.getElementById("question_" + q.Id + (q.CorrectAnswer ? "_True" : "_False")).checked = true;
    } else {
      document.getElementById("question_" + q.Id + "_Text").value = String(q.CorrectAnswer);
    }
  }
  SubmitAnswers();
}"""


def _drive_golf(page, course, sco, launch, timeout):
    frame = course_frame(page, launch, "typeof doNext === 'function' && typeof currentPage === 'number'",
                         timeout, "the golf launch page started (doStart ran)")
    for _ in range(100):
        if frame.evaluate("currentPage >= pageArray.length - 1"):
            break
        frame.evaluate("doNext()")
    assert frame.evaluate("currentPage === pageArray.length - 1 && reachedEnd === true"), "golf: not at its end"
    last = frame.evaluate("pageArray[currentPage]")
    if "assessmenttemplate.html" in last:
        test = course_frame(page, "shared/assessmenttemplate.html",
                            "typeof SubmitAnswers === 'function' && document.readyState === 'complete'"
                            " && window.parent !== window && typeof window.parent.RecordTest === 'function'",
                            timeout, "the knowledge check is loaded")
        test.evaluate(ANSWER_GOLF_TEST)


def _drive_golf_page(page, course, sco, launch, timeout):
    course_frame(page, launch, "document.readyState === 'complete' && initialized === true", timeout,
                 "the page SCO initialised")


def _drive_scorm_driver(page, course, sco, launch, timeout):
    frame = course_frame(page, launch, "typeof SetReachedEnd === 'function' && IsLoaded() === true", timeout,
                         "SCORM Driver is loaded (its Start() initialised with the LMS)")
    assert frame.evaluate("SetReachedEnd()") is True


# iSpring's player registers itself with window.ispringPresentationConnector when one exists as it
# starts (iSpring's documented JavaScript API); the test defines one in the course's frame only, before
# any script of the page runs, in both modes alike. The course itself is not changed.
ISPRING_HOOK = """if (/\\/res\\/index\\.html$/.test(window.location.pathname)) {
  window.ispringPresentationConnector = { register: function (player) { window.testIspringPlayer = player; } };
}"""
ISPRING_PLAYBACK = "window.testIspringPlayer.view().playbackController()"


def _drive_ispring(page, course, sco, launch, timeout):
    """Every slide in turn with the player's own navigation (gotoNextSlide), to the last one.

    This course reaches cmi.progress_measure 1 that way but never sets cmi.completion_status to
    "completed" (nor does playing the last slide or going past it): that is as far as it can be driven
    without knowing what its last slide wants, and the comparison holds it to the same on both modes.
    """
    # Ready once its first slide is current (before that, currentSlideIndex() throws: looked at again).
    frame = course_frame(page, launch, f"window.testIspringPlayer && window.testIspringPlayer.view() && "
                         f"{ISPRING_PLAYBACK}.currentSlideIndex() >= 0", timeout,
                         "the iSpring player registered with the connector and showing its first slide")
    slides = frame.evaluate("window.testIspringPlayer.presentation().slides().count()")
    for index in range(frame.evaluate(f"{ISPRING_PLAYBACK}.currentSlideIndex()") + 1, slides):
        frame.evaluate(f"{ISPRING_PLAYBACK}.gotoNextSlide()")
        frame.wait_for_function(f"{ISPRING_PLAYBACK}.currentSlideIndex() === {index}", timeout=timeout * 1000)
    # The player reports a slide's progress as it is shown: wait for the last one to reach the LMS.
    page.wait_for_function("() => window.lmsCalls.some(c => c.args[0] === 'cmi.progress_measure' && c.args[1] === '1')",
                           timeout=timeout * 1000)


PREPARE = {"ispring": lambda page: page.add_init_script(ISPRING_HOOK)}


DRIVES = {"golf": _drive_golf, "golf-page": _drive_golf_page, "driver": _drive_scorm_driver,
          "ispring": _drive_ispring}


@dataclass
class Run:
    records: list[dict]
    violations: list[str]
    calls: list[dict]
    errors: list[str] = field(default_factory=list)


def open_scos(page, lms, course: RealCourse, runtime: str, launches: list[str], wait_until: str = "load"):
    page.goto(lms.page(course.version, launches + ["about:blank"], runtime=runtime), wait_until=wait_until)


def next_sco(page, sco: int) -> None:
    page.evaluate("lmsNext()")
    page.wait_for_function(f"window.lmsSco === {sco}")


def leave(page, launches: list[str]) -> None:
    """What an LMS does when the learner closes the SCO: its frame goes to about:blank (unload runs)."""
    next_sco(page, len(launches))


def read_run(page, launches: list[str], errors: list[str]) -> Run:
    state = page.evaluate("n => ({records: Array.from({length: n}, (_, i) => window.lmsRecord(i)),"
                          " violations: window.lmsViolations, calls: window.lmsCalls})", len(launches))
    return Run(state["records"], state["violations"], state["calls"], errors)


GET = {"1.2": "LMSGetValue", "2004": "GetValue"}
NOT_SET = ("", "not attempted", "unknown")
PLAYER_PATH = "/scorm-player.html"  # the remote player (app.packages.remote.PLAYER_FILE)


def settle(page, sco: int, version: str, timeout: float) -> None:
    """A learner does not close the SCO in the very millisecond it ends.

    A remote course's API (the player's, on the content origin) answers at once and posts each
    change to the launcher in the LMS, which is another process under site isolation: on a loaded
    machine the last change can still be on its way when the test leaves. Wait until the LMS has
    seen every status, score, location and suspend data the course's API reads as set (nothing
    to wait for in the other modes, whose course talks to the LMS directly); past ``timeout`` go on,
    and the comparison shows what was lost.
    """
    from playwright.sync_api import Error

    players = [f for f in page.frames if _path_of(f.url).endswith(PLAYER_PATH)]
    if not players:
        return
    api = "API" if version == "1.2" else "API_1484_11"
    elements = list(EXACT[version]) + [e for e in PRESENT[version] if "session_time" not in e]
    try:
        read = players[-1].evaluate(f"els => els.map(e => window.{api} ? String(window.{api}.{GET[version]}(e)) : '')",
                                    elements)
    except Error:  # the player navigated away: nothing to wait for
        return
    wanted = [[e, v] for e, v in zip(elements, read, strict=True) if v not in NOT_SET]
    try:
        page.wait_for_function(
            "([sco, set, wanted]) => wanted.every(([e, v]) => window.lmsCalls.some(c => c.sco === sco && "
            "c.method === set && c.result === 'true' && c.args[0] === e && String(c.args[1]) === v))",
            arg=[sco, SET[version], wanted], timeout=timeout * 1000)
    except Error:  # lost on the way: the comparison says what
        pass


def run_course(page, lms, course: RealCourse, runtime: str, launches: list[str], drive: bool = True) -> Run:
    """Open each SCO in turn, drive it to its end, leave; what the LMS stored."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    timeout = 90.0 if course.heavy else 30.0
    if course.drive in PREPARE:
        PREPARE[course.drive](page)
    open_scos(page, lms, course, runtime, launches)
    # The course's frames are found by its own launch pages' paths, in any mode (a remote
    # package's LMS launch is the launcher; the course is two frames below it).
    pages = course.launches()
    for sco, _launch in enumerate(launches):
        if sco:
            next_sco(page, sco)
        if drive:
            DRIVES[course.drive](page, course, sco, pages[sco], timeout)
            settle(page, sco, course.version, timeout)
    leave(page, launches)
    return read_run(page, launches, errors)


def summary(record: dict, version: str) -> dict:
    """What the comparison looks at: status and score values, the presence of the rest."""
    out = {element: record.get(element) for element in EXACT[version]}
    out.update({element: element in record and record[element] != "" for element in PRESENT[version]})
    return out


def reported_events(calls: list[dict], version: str) -> set[str]:
    """Event kinds the course itself reported (its own successful SetValue of a status)."""
    kinds = set()
    for call in calls:
        if call["method"] == SET[version] and call["result"] == "true" and \
                call["args"][0] in STATUS_ELEMENTS[version] and call["args"][1] in EVENT_OF_STATUS:
            if version == "2004" and call["args"][0] == "cmi.completion_status" and call["args"][1] != "completed":
                continue
            kinds.add(EVENT_OF_STATUS[call["args"][1]])
    return kinds


# Where a remote package still records less than the course as exported, and why (issue 19 notes).
# Each is run (xfail, not skipped): it turns green by itself once the cause is fixed.
REMOTE_KNOWN = {
    "golf12-RuntimeMinimumCalls-multisco": "the SCOs finish only in their unload handler, which cannot reach the "
    "LMS once the launcher is gone; the launcher finishes for them with 'incomplete' where the LMS's own rule for "
    "a finish without a status gives 'completed' to the original",
    "captivate-chapter1-scorm12/simplify-scorm": "Captivate writes its bookmark and suspend data while unloading, "
    "after the launcher is gone",
}


def remote_known(course: RealCourse, runtime: str) -> str | None:
    return REMOTE_KNOWN.get(f"{course.name}/{runtime}") or REMOTE_KNOWN.get(course.name)
