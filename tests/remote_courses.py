"""Courses shaped like authoring tools' SCORM exports, written here (never copied from a tool).

Each is a dict of file name to bytes; ``as_zip`` packs one. What they share with the
real exports, as far as a remote package cares:

- ``storyline``: Articulate Storyline 360 / 3. ``imsmanifest.xml`` at the root with
  ``index_lms.html`` as the SCO, the player in ``story_content/`` (``user.js``,
  ``frame.js``), inline ``<script>`` blocks in the launch page, the player built
  with ``eval``/``new Function``, ``on…=`` handlers, a video in ``story_content/video/``
  played and seeked (Range requests), bookmark and suspend data written and read back.
- ``rise``: Articulate Rise 360. The SCO is ``scormdriver/indexAPI.html`` (a launch page
  in a subfolder), which frames ``../scormcontent/index.html``; the course inside finds
  the API in its parent, uses inline scripts, a ``data:`` font and a ``blob:`` image.
- ``captivate_multi``: Adobe Captivate / iSpring style multi-SCO: three SCO items share
  one launch file ``player.html``, told apart by the query of the resource href and the
  items' ``adlcp:parameters``; each reports its own lesson.
"""

from __future__ import annotations

import io
import zipfile

MANIFEST_12 = """<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="{ident}" version="1.0"
  xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
  xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.imsproject.org/xsd/imscp_rootv1p1p2 imscp_rootv1p1p2.xsd http://www.adlnet.org/xsd/adlcp_rootv1p2 adlcp_rootv1p2.xsd">
  <metadata><schema>ADL SCORM</schema><schemaversion>1.2</schemaversion></metadata>
  <organizations default="org">
    <organization identifier="org"><title>{title}</title>
{items}
    </organization>
  </organizations>
  <resources>
{resources}
  </resources>
</manifest>
"""

MANIFEST_2004 = """<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="{ident}" version="1.0"
  xmlns="http://www.imsglobal.org/xsd/imscp_v1p1"
  xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_v1p3"
  xmlns:adlseq="http://www.adlnet.org/xsd/adlseq_v1p3"
  xmlns:adlnav="http://www.adlnet.org/xsd/adlnav_v1p3"
  xmlns:imsss="http://www.imsglobal.org/xsd/imsss"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.imsglobal.org/xsd/imscp_v1p1 imscp_v1p1.xsd http://www.adlnet.org/xsd/adlcp_v1p3 adlcp_v1p3.xsd">
  <metadata><schema>ADL SCORM</schema><schemaversion>2004 4th Edition</schemaversion></metadata>
  <organizations default="org">
    <organization identifier="org"><title>{title}</title>
{items}
    </organization>
  </organizations>
  <resources>
{resources}
  </resources>
</manifest>
"""


def manifest(version: str, title: str, items: list[tuple[str, str, str]], resources: list[tuple[str, str]],
             extra: str = "") -> str:
    """items: (identifier, resource, parameters); resources: (identifier, href)."""
    attr = "adlcp:scormtype" if version == "1.2" else "adlcp:scormType"
    item_xml = "\n".join(
        f'      <item identifier="{i}" identifierref="{r}"' + (f' parameters="{p}"' if p else "")
        + f"><title>{title} {n + 1}</title>{extra}</item>" for n, (i, r, p) in enumerate(items))
    resource_xml = "\n".join(f'    <resource identifier="{i}" type="webcontent" {attr}="sco" href="{h}">'
                             f'<file href="{h.split("?")[0]}"/></resource>' for i, h in resources)
    template = MANIFEST_12 if version == "1.2" else MANIFEST_2004
    return template.format(ident=f"com.tool.{title.lower().replace(' ', '')}", title=title, items=item_xml,
                           resources=resource_xml)


# A few hundred KiB of "video": a real WebM is not needed for Range; the page fetches slices itself
# as a player seeking does, and plays nothing.
VIDEO = bytes(range(256)) * 2048  # 512 KiB

# Storyline's launch page: inline scripts, eval, inline handlers, the player in story_content/.
STORYLINE_LAUNCH = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Storyline course</title>
<script>window.DS = {}; window.globalProvideData = function (kind, data) {{ window.DS[kind] = data; }};</script>
<script src="story_content/user.js"></script>
</head>
<body onload="window.bodyLoaded = true;">
<div id="state">loading</div>
<button id="next" onclick="window.player.next()">Next</button>
<button id="finish" onclick="window.player.finish()">Finish</button>
<script>
  // The player is built from a string, as Storyline's frame.js builds its data.
  eval("window.evalRan = 'yes';");
  var make = new Function("return 6 * 7;");
  window.madeByFunction = make();
</script>
<script src="story_content/frame.js"></script>
</body>
</html>
"""

STORYLINE_USER_JS = "window.userJsRan = true;\n"

# The player: finds the API as real drivers do (the golf examples' findAPI, pipwerks, SCORM
# Driver): window.parent upwards first, with no try/catch (a cross-origin window on the way
# throws), then its own window; resumes from the bookmark, fetches the video by Range,
# reports score and status.
STORYLINE_FRAME_JS = """(function () {
  var v = "@VERSION@";
  var n = v === "1.2"
    ? {api: "API", init: "LMSInitialize", get: "LMSGetValue", set: "LMSSetValue", commit: "LMSCommit",
       end: "LMSFinish", err: "LMSGetLastError", str: "LMSGetErrorString"}
    : {api: "API_1484_11", init: "Initialize", get: "GetValue", set: "SetValue", commit: "Commit",
       end: "Terminate", err: "GetLastError", str: "GetErrorString"};
  function find(w) {
    for (var i = 0; w && i < 10; i++) {
      if (w[n.api]) { return w[n.api]; }
      if (w.parent === w) { break; }
      w = w.parent;
    }
    return null;
  }
  var api = find(window.parent) || find(window);
  var el = v === "1.2"
    ? {loc: "cmi.core.lesson_location", status: "cmi.core.lesson_status", raw: "cmi.core.score.raw",
       name: "cmi.core.student_name", exit: "cmi.core.exit"}
    : {loc: "cmi.location", status: "cmi.completion_status", raw: "cmi.score.raw",
       name: "cmi.learner_name", exit: "cmi.exit"};
  var log = window.scormLog = [];
  function call(method, a, b) {
    var r = b === undefined ? api[method](a) : api[method](a, b);
    log.push([method, a, String(r), String(api[n.err]())]);
    return String(r);
  }
  window.player = {};
  if (!api) { document.getElementById("state").textContent = "no api"; return; }
  call(n.init, "");
  window.resumedFrom = call(n.get, el.loc);
  window.resumedData = call(n.get, "cmi.suspend_data");
  window.learnerName = call(n.get, el.name);
  // A write-only element read, as some players do when they probe: the LMS's code comes back.
  call(n.get, v === "1.2" ? "cmi.core.session_time" : "cmi.session_time");
  window.probeError = String(api[n.err]());
  window.probeString = String(api[n.str](window.probeError));
  // A bad status value is refused with the version's code.
  call(n.set, el.status, "done");
  window.badStatusError = String(api[n.err]());
  fetch("story_content/video/intro.mp4", {headers: {Range: "bytes=1000-1999"}}).then(function (r) {
    window.rangeStatus = r.status;
    return r.arrayBuffer();
  }).then(function (b) {
    var bytes = new Uint8Array(b);
    window.rangeBytes = bytes.length;
    window.rangeFirst = bytes[0];
  });
  document.getElementById("state").textContent = "slide 1";
  window.player.next = function () {
    call(n.set, el.loc, "slide-2");
    call(n.set, "cmi.suspend_data", "A1B2C3-resume-here");
    if (v === "2004") { call(n.set, el.status, "incomplete"); } else { call(n.set, el.status, "incomplete"); }
    call(n.commit, "");
    document.getElementById("state").textContent = "slide 2";
  };
  window.player.finish = function () {
    call(n.set, el.raw, "87");
    if (v === "2004") {
      call(n.set, "cmi.score.scaled", "0.87");
      call(n.set, el.status, "completed");
      call(n.set, "cmi.success_status", "passed");
    } else {
      call(n.set, el.status, "passed");
    }
    call(n.set, el.exit, "suspend");
    call(n.commit, "");
    call(n.end, "");
    document.getElementById("state").textContent = "finished";
  };
})();
"""


def storyline(version: str, marker: str = "v1") -> dict[str, bytes]:
    m = manifest(version, "Storyline Course", [("item_1", "res_1", "")], [("res_1", "index_lms.html")])
    return {
        "imsmanifest.xml": m.encode(),
        "index_lms.html": STORYLINE_LAUNCH.replace("<title>Storyline course", f"<title>Storyline course {marker}").encode(),
        "story.html": b"<!DOCTYPE html><html><body>Not in an LMS</body></html>",
        "story_content/user.js": STORYLINE_USER_JS.encode(),
        "story_content/frame.js": STORYLINE_FRAME_JS.replace("@VERSION@", version).encode(),
        "story_content/video/intro.mp4": VIDEO,
        "meta.xml": b"<meta/>",
    }


RISE_INDEX_API = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Rise</title>
<script>window.riseDriver = "loaded";</script>
</head>
<body style="margin:0">
<iframe id="scormcontent" src="../scormcontent/index.html" style="width:100%;height:600px;border:0"></iframe>
</body></html>
"""

RISE_CONTENT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Rise course</title>
<style>@font-face { font-family: Lato; src: url(data:font/woff2;base64,AAAA) format("woff2"); }
body { font-family: Lato, sans-serif; }</style>
</head>
<body>
<p id="state">loading</p>
<button id="complete" onclick="complete()">Complete</button>
<script>
  var v = "@VERSION@";
  function findApi(w) { while (w) { if (w.API || w.API_1484_11) return w;
    if (w.parent === w) return null; w = w.parent; } return null; }
  var host = findApi(window.parent);
  var api = v === "1.2" ? host.API : host.API_1484_11;
  window.initResult = v === "1.2" ? api.LMSInitialize("") : api.Initialize("");
  var image = new Image();
  image.onload = function () { window.blobImage = "loaded"; };
  image.src = URL.createObjectURL(new Blob(['<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>'],
                                           {type: "image/svg+xml"}));
  document.getElementById("state").textContent = "lesson ready";
  function complete() {
    if (v === "1.2") { api.LMSSetValue("cmi.core.lesson_status", "completed"); api.LMSCommit("");
                       api.LMSFinish(""); }
    else { api.SetValue("cmi.completion_status", "completed"); api.Commit(""); api.Terminate(""); }
    document.getElementById("state").textContent = "done";
  }
</script>
</body></html>
"""


def rise(version: str) -> dict[str, bytes]:
    m = manifest(version, "Rise Course", [("item_1", "res_1", "")], [("res_1", "scormdriver/indexAPI.html")])
    return {
        "imsmanifest.xml": m.encode(),
        "scormdriver/indexAPI.html": RISE_INDEX_API.encode(),
        "scormdriver/scormdriver.js": b"/* driver */",
        "scormcontent/index.html": RISE_CONTENT.replace("@VERSION@", version).encode(),
        "scormcontent/lib/main.bundle.js": b"window.bundle = 1;",
    }


PLAYER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Lesson player</title></head>
<body>
<p id="state">loading</p>
<button id="done" onclick="done()">Done</button>
<script>
  var query = new URLSearchParams(location.search);
  var lesson = query.get("lesson"), mode = query.get("mode");
  var api = window.parent.API_1484_11 || window.parent.API;
  var v12 = !!window.parent.API;
  v12 ? api.LMSInitialize("") : api.Initialize("");
  document.getElementById("state").textContent = "lesson " + lesson + " mode " + mode;
  function done() {
    if (v12) { api.LMSSetValue("cmi.core.lesson_status", "completed"); api.LMSFinish(""); }
    else { api.SetValue("cmi.completion_status", "completed"); api.Terminate(""); }
    document.getElementById("state").textContent = "lesson " + lesson + " done";
  }
</script>
</body></html>
"""


def captivate_multi(version: str) -> dict[str, bytes]:
    m = manifest(version, "Lessons",
                 [("item_1", "res_1", "?mode=intro"), ("item_2", "res_2", "mode=quiz"), ("item_3", "res_3", "")],
                 [("res_1", "player.html?lesson=1"), ("res_2", "player.html?lesson=2"),
                  ("res_3", "player.html?lesson=3&amp;mode=summary")])
    return {"imsmanifest.xml": m.encode(), "player.html": PLAYER.encode(),
            "assets/lesson.css": b"p { color: #222; }"}


def as_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return buffer.getvalue()
