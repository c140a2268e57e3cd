"""cmi5 (``cmi5.xml``) and Tin Can (``tincan.xml``) course structures: what an LMS launches.

Parsed as carefully as a SCORM manifest (no DTDs or entities, well-formed or refused).
A cmi5 course structure holds AUs, possibly inside nested blocks; each AU has an ``id``,
a ``url`` (relative to the course structure, or absolute), ``launchMethod``
(``AnyWindow`` or ``OwnWindow``) and ``moveOn``. A Tin Can ``tincan.xml`` lists
activities; those with a ``<launch>`` are what an LMS opens (usually the course
activity alone). Both files are kept byte for byte in a package: only the launch pages
get the tracker.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused

from app.packages.errors import PackageError
from app.packages.zipsafety import safe_member_name

CMI5_FILE = "cmi5.xml"
TINCAN_FILE = "tincan.xml"
STANDARD_FILES = {"cmi5": CMI5_FILE, "tincan": TINCAN_FILE}
STANDARD_NAMES = {"cmi5": "cmi5", "tincan": "xAPI (Tin Can)"}


def format_name(package_format: str | None) -> str:
    """A package's format as people name it: "SCORM 1.2", "SCORM 2004", "cmi5", "xAPI (Tin Can)"."""
    return STANDARD_NAMES.get(package_format or "", f"SCORM {package_format}")


MOVE_ON = ("NotApplicable", "Passed", "Completed", "CompletedAndPassed", "CompletedOrPassed")
LAUNCH_METHODS = ("AnyWindow", "OwnWindow")


@dataclass(frozen=True)
class LaunchUnit:
    """One thing an LMS launches: a cmi5 AU or a Tin Can activity with a launch page.

    ``launch`` is the page inside the package (None when ``url`` is absolute), ``query``
    the query string the manifest gives it (the LMS adds its launch parameters after it).
    """

    id: str
    title: str
    url: str
    launch: str | None
    query: str = ""
    launch_method: str = "AnyWindow"
    move_on: str = "NotApplicable"

    @property
    def absolute(self) -> bool:
        return self.launch is None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(data: bytes, filename: str) -> ElementTree.Element:
    # As for imsmanifest.xml: the parser refuses a DOCTYPE wherever it stands and in whatever
    # encoding (a byte search misses one in UTF-16 or after 4 KB of comment), and the file goes
    # to the LMS byte for byte.
    try:
        return defused.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise PackageError(f"{filename} declares a DOCTYPE or entities; a course structure needs neither") from None
    except ElementTree.ParseError as exc:
        raise PackageError(f"{filename} is not well-formed XML ({exc})") from None


def _text(element: ElementTree.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _title(element: ElementTree.Element) -> str:
    title = next((c for c in element if _local(c.tag) in ("title", "name")), None)
    return _text(title)


def _place(raw: str, filename: str, what: str) -> tuple[str | None, str]:
    """(file inside the package or None when absolute, query string) of a launch URL."""
    value = raw.strip()
    if not value:
        raise PackageError(f"{filename}: {what} has an empty launch URL")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.scheme != "https" or not parts.hostname:
            raise PackageError(f"{filename}: {what} launches {value!r}; an absolute launch URL must be https://")
        return None, parts.query
    try:
        name = safe_member_name(posixpath.normpath(unquote(parts.path)))
    except PackageError as exc:
        raise PackageError(f"{filename}: {what} launches {value!r}, outside the package ({exc})") from None
    return name, parts.query


def read_cmi5(data: bytes) -> list[LaunchUnit]:
    """The AUs of a cmi5 course structure, in document order (blocks flattened)."""
    root = _parse(data, CMI5_FILE)
    if _local(root.tag) != "courseStructure":
        raise PackageError("cmi5.xml has no <courseStructure> root element")
    units: list[LaunchUnit] = []
    for au in root.iter():
        if _local(au.tag) != "au":
            continue
        au_id = (au.get("id") or "").strip()
        what = f"AU {au_id!r}" if au_id else f"AU {len(units) + 1}"
        if not au_id:
            raise PackageError(f"cmi5.xml: {what} has no id")
        url = next((c for c in au if _local(c.tag) == "url"), None)
        if url is None or not (url.text or "").strip():
            raise PackageError(f"cmi5.xml: {what} has no <url>: an LMS would not know what to launch")
        method = au.get("launchMethod") or "AnyWindow"
        move_on = au.get("moveOn") or "NotApplicable"
        if method not in LAUNCH_METHODS:
            raise PackageError(f"cmi5.xml: {what} has launchMethod {method!r}, not one of "
                               f"{', '.join(LAUNCH_METHODS)}")
        if move_on not in MOVE_ON:
            raise PackageError(f"cmi5.xml: {what} has moveOn {move_on!r}, not one of {', '.join(MOVE_ON)}")
        launch, query = _place(url.text, CMI5_FILE, what)
        units.append(LaunchUnit(id=au_id, title=_title(au), url=url.text.strip(), launch=launch, query=query,
                                launch_method=method, move_on=move_on))
    if not units:
        raise PackageError("cmi5.xml lists no AU (<au> with a <url>): an LMS would have nothing to launch")
    return units


def read_tincan(data: bytes) -> list[LaunchUnit]:
    """The activities of a tincan.xml that have a launch page, in document order."""
    root = _parse(data, TINCAN_FILE)
    if _local(root.tag) != "tincan":
        raise PackageError("tincan.xml has no <tincan> root element")
    units: list[LaunchUnit] = []
    for activity in root.iter():
        if _local(activity.tag) != "activity":
            continue
        launch = next((c for c in activity if _local(c.tag) == "launch"), None)
        if launch is None or not (launch.text or "").strip():
            continue
        activity_id = (activity.get("id") or "").strip()
        what = f"activity {activity_id!r}"
        if not activity_id:
            raise PackageError("tincan.xml: an activity with a <launch> has no id")
        name, query = _place(launch.text, TINCAN_FILE, what)
        units.append(LaunchUnit(id=activity_id, title=_title(activity), url=launch.text.strip(), launch=name,
                                query=query))
    if not units:
        raise PackageError("tincan.xml lists no activity with a <launch>: an LMS would have nothing to launch")
    return units


def read_standard(standard: str, data: bytes) -> list[LaunchUnit]:
    return read_cmi5(data) if standard == "cmi5" else read_tincan(data)


# An AU's <url> element, with or without a namespace prefix, in the bytes of a UTF-8 (or ASCII) cmi5.xml.
_URL_ELEMENT = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?url)(\s[^>]*)?>(.*?)</\1\s*>", re.DOTALL)


def absolute_cmi5(data: bytes, urls: list[str]) -> bytes:
    """The tool's own cmi5.xml with the n-th AU's ``url`` replaced by ``urls[n]``, every other byte kept.

    For a remote package (cmi5 allows an absolute AU url). The course structure must be UTF-8 and
    hold one ``<url>`` per AU (the cmi5 schema has ``url`` in AUs only); otherwise PackageError.
    """
    units = read_cmi5(data)
    if len(units) != len(urls):
        raise ValueError("one URL per AU")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError("cmi5.xml is not UTF-8: save it as UTF-8 to build a remote package") from None
    found = list(_URL_ELEMENT.finditer(data))
    if len(found) != len(units):
        raise PackageError("cmi5.xml: its <url> elements could not be matched one to one with its AUs; export "
                           "the course again")
    out, at = [], 0
    for match, url in zip(found, urls, strict=True):
        out += [data[at:match.start(3)], escape(url).encode("utf-8")]
        at = match.end(3)
    out.append(data[at:])
    rewritten = b"".join(out)
    if [unit.url for unit in read_cmi5(rewritten)] != urls:  # what the LMS will read is what was meant
        raise PackageError("cmi5.xml: its AU urls could not be rewritten; export the course again")
    return rewritten
