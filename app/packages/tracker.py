"""The usage tracker (``scorm_package/tracker.js``): configured for a package and added to launch pages."""

from __future__ import annotations

import json
import posixpath
import re
import uuid

from app.packages.errors import PackageError
from app.packages.sealing import SEAL_MARK, with_seal_library
from app.packages.source import PACKAGE_SOURCE

TRACKER_FILE = "scorm-usage-tracker.js"
BEACON_PATH = "/api/v1/beacons"
CONFIG_MARK = "/*@TRACKER_CONFIG@*/ null"


def tracker_source() -> str:
    """tracker.js as shipped: its header comment, comment lines and indentation left out.

    Only whole-line comments go, so no string or regular expression is touched.
    """
    source = (PACKAGE_SOURCE / "tracker.js").read_text(encoding="utf-8")
    if source.startswith("/*"):
        source = source[source.index("*/") + 2:]
    lines = (line.strip() for line in source.splitlines())
    kept = "\n".join(line for line in lines if line and not line.startswith("//"))
    return with_seal_library("/* SCORM usage tracker */\n" + kept + "\n", "scorm_package/tracker.js")


def configured_tracker(*, beacon_url: str, key: str, course: str, package_id: uuid.UUID, scorm_version: str,
                       self_open: bool = False, sealed: str | None = None, grant: str | None = None,
                       activities: list[str] | None = None, remote: bool = False) -> bytes:
    """The tracker for one package. ``self_open``: the content has no SCORM calls (see ``talks_scorm``).

    ``sealed``: None for a client whose packages are not sealed; "package" for a sealed client's
    deployed package (the seal mark stays, for the client to fill in its own browser or with
    ``flask package seal``); "relayed" for a sealed client's remote player, which gets the
    learner already sealed by the launcher on the LMS.
    ``grant``: the seat grant a remote launch came with, sent with every beacon.
    ``scorm_version`` "cmi5" or "tincan" puts the tracker in its xAPI mode; ``activities`` are then
    the package's launchable activity IDs (used when a launch names none).
    ``remote``: served from the content origin; a cmi5 AU there names its LMS by the page's referrer.
    """
    source = tracker_source()
    if CONFIG_MARK not in source or SEAL_MARK not in source:
        raise RuntimeError("scorm_package/tracker.js lost its configuration or seal mark")
    settings = {"url": beacon_url, "key": key, "course": course, "packageId": str(package_id),
                "scormVersion": scorm_version, "selfOpen": self_open, "sealed": sealed or False}
    if grant:
        settings["grant"] = grant
    if activities is not None:
        settings["activities"] = activities
    if remote and activities is not None:
        settings["remote"] = True
    source = source.replace(CONFIG_MARK, json.dumps(settings, ensure_ascii=True), 1)
    if sealed != "package":
        source = source.replace(SEAL_MARK, "null", 1)
    return source.encode("utf-8")


# A course that looks for a SCORM API names it: 1.2 drivers call LMSInitialize, 2004 ones look
# for API_1484_11 (Rustici's SCORM Driver, pipwerks, the golf examples, iSpring, Captivate...).
_SCORM_CALLS = re.compile(rb"LMSInitialize|API_1484_11")
_SCRIPTED = (".html", ".htm", ".js", ".xhtml")


def talks_scorm(course) -> bool:
    """Whether any page or script of ``course`` (a ``Content``) talks to a SCORM API.

    Such a course opens its own session, so the tracker must never open one for it: a
    session the tracker opened and the course never used is how a 1.2 LMS comes to record
    "completed" for a learner who saw nothing (see tracker.js, rule 2).
    """
    for name in course.files:
        if name.lower().endswith(_SCRIPTED) and _mentions_scorm(course, name):
            return True
    return False


def _mentions_scorm(course, name: str) -> bool:
    """Searched a chunk at a time, with an overlap, so a large script is never held whole."""
    overlap = len(b"LMSInitialize") - 1
    carry = b""
    with course.open(name) as stream:
        while chunk := stream.read(1024 * 1024):
            if _SCORM_CALLS.search(carry + chunk):
                return True
            carry = chunk[-overlap:]
    return False


_HEAD = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
_HTML_TAG = re.compile(rb"<html(\s[^>]*)?>", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!doctype[^>]*>", re.IGNORECASE)


def inject_tracker(html: bytes, launch: str, scripts: tuple[str, ...] = (TRACKER_FILE,)) -> bytes:
    """Load the tracker (and ``scripts`` before it) first thing in <head>, so it sees the first SCORM call."""
    if html.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PackageError(f"launch file {launch!r} is UTF-16; save it as UTF-8")
    tags = []
    for script in scripts:
        src = posixpath.relpath(script, posixpath.dirname(launch) or ".")
        tags.append(b'<script src="' + src.encode("utf-8") + b'"></script>')
    tag = b"\n".join(tags)
    for pattern in (_HEAD, _HTML_TAG, _DOCTYPE):
        match = pattern.search(html)
        if match:
            return html[:match.end()] + b"\n" + tag + html[match.end():]
    bom = b"\xef\xbb\xbf" if html.startswith(b"\xef\xbb\xbf") else b""
    return bom + tag + b"\n" + html[len(bom):]
