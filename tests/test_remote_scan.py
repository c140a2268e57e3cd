"""Remote build warnings: every file scanned, only what truly fails in a remote package named.

The real exports in ../shared/real-courses/ (see its SOURCES.txt) are built
remotely through the service and must get no scan warning: they run remotely.
Synthetic courses show each rule firing, and each allowed idiom staying quiet.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from conftest import require
from remote_courses import as_zip
from sqlalchemy import select

from app import packages
from app.extensions import db
from app.models import PackageIssue
from app.packages.manifest import Sco
from app.packages.remote_scan import remote_warnings
from app.packages.zipsafety import Content

# one_database: the remote build's scan of course files.
pytestmark = pytest.mark.one_database

REAL_COURSES = Path(__file__).resolve().parent.parent.parent / "shared" / "real-courses"
SERVER = "https://track.vendor.example"
SEQUENCING = ("the manifest's sequencing rules (imsss:sequencing) are not carried into the remote package; "
              "the LMS lets the learner open its items in any order")

# Each real SCORM export, its version and every warning its remote build gives (none from the scan).
REAL_SCORM = [
    ("golf12-RuntimeBasicCalls.zip", "1.2", []),
    ("golf12-RuntimeMinimumCalls-multisco.zip", "1.2", []),
    ("golf2004-RuntimeBasicCalls.zip", "2004", [SEQUENCING]),
    ("golf2004-SequencingSimpleRemediation.zip", "2004", [SEQUENCING]),
    ("rise360-bacon-scorm12.zip", "1.2", []),
    ("storyline360-workplace-conflict-scorm12.zip", "1.2", []),
    ("captivate-chapter1-scorm12.zip", "1.2", []),
    ("ispring-scorm2004-4th.zip", "2004", [SEQUENCING]),
]


def real_course(name: str) -> Path:
    path = REAL_COURSES / name
    require(path.is_file(), f"the real course {path} is missing (../shared/real-courses/)")
    return path


def build_remote(customer, content, version="1.2", title="Real course"):
    return packages.package_bytes(db.session, client=customer, course_title=title, scorm_version=version,
                                  content=content, mode="remote", server_url=SERVER, issued_by="test")[1]


@pytest.mark.parametrize(("name", "version", "expected"), REAL_SCORM, ids=[c[0][:-4] for c in REAL_SCORM])
def test_real_exports_built_remotely_get_no_scan_warning(make_client, name, version, expected):
    customer, _ = make_client()
    with real_course(name).open("rb") as upload:
        built = build_remote(customer, upload, version)
    assert built.warnings == expected


def test_asset_only_real_export_is_refused_with_its_reason(make_client):
    customer, _ = make_client()
    with real_course("golf12-ContentPackagingOneFilePerSCO.zip").open("rb") as upload, \
            pytest.raises(packages.PackageError, match=r"lists only assets \(adlcp:scormtype=\"asset\"\)"):
        build_remote(customer, upload)
    assert db.session.scalar(select(PackageIssue)) is None


def test_the_players_own_branches_for_outside_an_lms_are_recognised_by_their_code():
    """Without the idioms list these real files would warn; with it, only those exact calls are passed."""
    for name, member, finding in [
        ("captivate-chapter1-scorm12.zip", "Utilities.js", "top.open"),
        ("storyline360-workplace-conflict-scorm12.zip", "html5/lib/scripts/slides.min.js", "top.location"),
        ("rise360-bacon-scorm12.zip", "scormcontent/lib/main.bundle.js", "top.location"),
    ]:
        with zipfile.ZipFile(real_course(name)) as archive:
            body = archive.read(member)
        assert scan({member: body}) == []
        # The same player code aimed elsewhere than its known branch is named.
        altered = (body.replace(b'open("","_self")', b'open("x.html","_self")')
                   .replace(b'"mailto:"', b'"next.html?"').replace(b'"/learning-path/"', b'"/next/"'))
        assert altered != body
        assert finding in " ".join(scan({member: altered})), member


def scan(files: dict[str, bytes], launch: str = "index.html") -> list[str]:
    files = {name: (body.encode() if isinstance(body, str) else body) for name, body in files.items()}
    content = Content(files={name: (lambda b=body: b) for name, body in files.items()})
    return remote_warnings(content, [], [Sco(title="Course", launch=launch)] if launch in files else [])


PAGE = "<!DOCTYPE html><html><head><title>c</title>{head}</head><body>{body}</body></html>"


@pytest.mark.parametrize(("files", "named"), [
    ({"exit.js": "function leave() { top.location.href = '/done.html'; }"}, "exit.js (top.location)"),
    ({"exit.js": "function leave() { window.top.location = 'done.html'; }"}, "exit.js (top.location)"),
    ({"exit.js": "function leave() { window.top.location.replace('done.html'); }"}, "exit.js (top.location)"),
    ({"index.html": PAGE.format(head="", body='<a href="next.html" target="_top">Next</a>')},
     "index.html (target=_top)"),
    ({"menu.js": "document.write('<a href=\"a.html\" target=\"_top\">A</a>');"}, "menu.js (target=_top)"),
    ({"menu.js": "link.target = '_top';"}, "menu.js (target=_top)"),
    ({"api.js": "var api = window.top.API || findAPI(window.parent);"}, "api.js (top.API)"),
    ({"api.js": "var api = top['API_1484_11'];"}, "api.js (top.API_1484_11)"),
    ({"size.js": "var h = top.document.body.clientHeight;"}, "size.js (top.document)"),
    ({"index.html": PAGE.format(head="<script>var api = parent.parent.API;</script>", body="")},
     "index.html (parent.parent.API)"),
    ({"index.html": PAGE.format(head='<script src="js/find.js"></script>', body=""),
      "js/find.js": "var lms = window.parent.parent.document.title;"}, "js/find.js (parent.parent.document)"),
    ({"index.html": PAGE.format(head="", body="<button onclick=\"top.location.href='menu.html'\">Menu</button>")},
     "index.html (top.location)"),
])
def test_what_reaches_into_the_lms_window_is_named(files, named):
    files.setdefault("index.html", PAGE.format(head="", body="course"))
    warnings = scan(files)
    assert len(warnings) == 1 and warnings[0].startswith(f"{named} reaches into the LMS's window"), warnings


@pytest.mark.parametrize("files", [
    {"api.js": "try { var api = window.top.API; } catch (e) { api = null; }"},
    {"api.js": "function scan(w){ while (w.API == null && w.parent != w) { w = w.parent; } return w.API; }\n"
               "var api = scan(window.parent) || (window.top.opener && scan(window.top.opener));"},
    {"close.js": "if (window.top == window.self) { window.close(); } else { window.top.close(); }"},
    {"frames.js": "var n = top.frames.length; top.postMessage('hi', '*'); top.focus();"},
    {"notes.js": "// never write top.location.href = x here\n/* top.document */ var s = 'top.API';"},
    {"regex.js": "var r = /top.location['\"]/; var t = a / b; top.opener;"},
    {"layout.js": "var y = parseFloat(getComputedStyle(el).top.replace('px', '')); this.parent.parent.x = 1;"},
    {"stack.js": "var top = stack.pop(); top.value = 1;"},
    {"index.html": PAGE.format(head="<script>var doc = window.parent.document;</script>",
                               body='<a href="http://www.scorm.com">scorm.com</a>'
                                    '<span xmlns:dc="http://purl.org/dc/elements/1.1/">x</span>')},
    {"deep/frame.html": PAGE.format(head="<script>var api = parent.parent.API;</script>", body="")},
    {"lib.js": 'var ok = new URL("http://test/path").href === "http://test/path";'},
    {"close.js": 'window.top.window.open("","_self","").close();'},
])
def test_what_works_in_a_remote_package_is_not_named(files):
    files.setdefault("index.html", PAGE.format(head="", body="course"))
    assert scan(files) == []


def test_insecure_resources_and_plugins_are_named():
    warnings = scan({"index.html": PAGE.format(head='<link rel="stylesheet" href="http://cdn.example/a.css">',
                                               body='<img src="http://cdn.example/logo.png">'),
                     "style.js": "el.style.background = 'url(http://cdn.example/b.png)';",
                     "local.html": PAGE.format(head="", body='<img src="http://localhost:8000/x.png">'),
                     "movie.swf": b"FWS"})
    assert warnings == [
        "index.html, style.js load files over plain http://, which browsers block in an https page",
        "movie.swf needs a browser plug-in (Flash, Java, Silverlight) no browser runs",
    ]


def test_scormdriver_files_are_scanned_like_any_other(make_client):
    customer, _ = make_client()
    files = {"index.html": PAGE.format(head='<script src="lms/scormdriver.js"></script>', body=""),
             "lms/scormdriver.js": "function GetAPI(){ return window.top.API; }"}
    built = build_remote(customer, io.BytesIO(as_zip({k: v.encode() for k, v in files.items()})))
    assert built.warnings == ["lms/scormdriver.js (top.API) reaches into the LMS's window: in a remote package "
                              "the LMS is on another origin, so the browser refuses it; test it, or build a "
                              "deployed package"]
