"""Remote packages: a thin zip on the LMS, the course published to the content store.

The standard cross-domain layout, three windows deep:

- the launcher (``index.html?sco=N`` of the thin zip, on the LMS's origin) finds the
  LMS's API, opens the LMS session, and frames ``CONTENT_URL/<package>/launch/<N>``
  (``.../<package>/g/<grant>/launch/<N>`` with the seat grant the seat check gave, which a
  client whose licence blocks new learners is served only with);
- that address redirects to the current version's player page (``scorm-player.html``,
  on the content origin), so a republish shows at the next launch on every LMS. The
  player holds the SCORM API (1.2 ``API``, 2004 ``API_1484_11``: the relay's course side)
  and the tracker, and frames the SCO's launch page;
- the course, byte for byte as exported, in a same-origin child of the player. Every
  driver that searches ``window.parent`` upwards (Rustici's SCORM Driver, pipwerks, the
  golf examples' ``findAPI``) finds the API in the player before it could reach the
  LMS's window of another origin; a popup the course opens finds it through its opener.

The player and the launcher talk by ``postMessage``, each checking the other's origin
and window. The content origin (``CONTENT_URL``) is never the app's origin: nothing a
course runs can act for a signed-in staff member.

Publishing stores every course file as it is; the index of the version records its
SCOs and whether the course talks SCORM at all (the tracker's ``selfOpen``).
"""

from __future__ import annotations

import json
import uuid
import zipfile
from urllib.parse import quote, urlsplit

from app.packages.errors import PackageError
from app.packages.manifest import ITEM_SETTINGS, Sco, ids
from app.packages.sealing import SEAL_MARK, with_seal_library
from app.packages.source import PACKAGE_SOURCE, templates
from app.packages.tracker import TRACKER_FILE, talks_scorm
from app.packages.xapi_manifest import CMI5_FILE, absolute_cmi5, read_cmi5
from app.packages.zipsafety import Content

REMOTE_API_FILE = "scorm-remote-api.js"
PLAYER_FILE = "scorm-player.html"
RESERVED_FILES = (TRACKER_FILE, REMOTE_API_FILE, PLAYER_FILE)
PLAYER_LAYOUT = 2  # versions published before the player (layout 1) had the relay in their launch pages
REMOTE_LAUNCHER_FILES = ("index.html", "remote-launcher.js", "remote-launcher.css")
LAUNCHER_MARK = "/*@LAUNCHER_CONFIG@*/ null"
_HTML = (".html", ".htm")


def origin_of(url: str) -> str:
    """The origin as a browser writes it (``event.origin``): lower-case host, no default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def check_content_url(content_url: str | None, server_url: str) -> str:
    """CONTENT_URL as an origin, never the app's own; PackageError with what to do otherwise."""
    if not content_url:
        raise PackageError("remote packages need CONTENT_URL: the origin (e.g. https://content.vendor.example) "
                           "remote content is served from, never the app's own; set it and restart")
    value = origin_of(content_url)
    if value == origin_of(server_url):
        raise PackageError(f"CONTENT_URL {content_url!r} is the app's own origin; remote content needs an "
                           "origin of its own")
    return value


def launch_url(content_url: str, package_id: uuid.UUID, sco: int = 0) -> str:
    """The stable address of a SCO's launch page (it redirects to the current version)."""
    return f"{content_url}/{package_id}/launch/{sco}"


def version_url(content_url: str, package_id: uuid.UUID, version: str, href: str, prefix: str = "") -> str:
    """A file of a version; ``prefix`` is ``/g/<grant>`` for a client whose licence blocks new learners."""
    path, _, query = href.partition("?")
    return f"{content_url}/{package_id}{prefix}/{version}/{quote(path)}" + (f"?{query}" if query else "")


def remote_api_source() -> bytes:
    return (PACKAGE_SOURCE / "remote" / REMOTE_API_FILE).read_bytes()


def player_url(package_id: uuid.UUID, version: str, sco: int, prefix: str = "") -> str:
    """Where ``launch/<sco>`` sends the launcher's frame: the version's player for that SCO
    (under ``/g/<grant>`` when the launch came with a seat grant; the course's relative
    addresses keep it)."""
    return f"/{package_id}{prefix}/{version}/{PLAYER_FILE}?sco={sco}"


def player_page(index: dict, sco: int, title: str) -> bytes | None:
    """The player page of a version for its n-th SCO (None when there is no such SCO)."""
    if not 0 <= sco < len(index["scos"]):
        return None
    href = index["scos"][sco]["href"]
    path, _, query = href.partition("?")
    return templates.get_template("remote/player.html").render(
        title=title, api_src=REMOTE_API_FILE, tracker_src=TRACKER_FILE,
        course_src=quote(path) + (f"?{query}" if query else "")).encode("utf-8")


def check_scos(course: Content, scos: list[Sco]) -> None:
    for sco in scos:
        if sco.launch not in course.files:
            raise PackageError(f"imsmanifest.xml launches {sco.launch!r}, which is not in the content")
        if not sco.launch.lower().endswith(_HTML):
            raise PackageError(f"launch file {sco.launch!r} is not an HTML page the relay can be added to")


def publish(store, course: Content, scos: list[Sco], package_id: uuid.UUID,
            activities: list[str] | None = None) -> tuple[str, int]:
    """Store the course, unchanged, as a new version; (version name, bytes of course files).

    ``activities``: a cmi5 course's AU IDs, in the order of ``scos`` (its AUs). Such a version has
    no player: the LMS opens its AUs' pages directly (``launch/<n>`` sends the LMS's launch
    parameters on to them) and the content origin adds the tracker to those pages as it serves them.
    """

    def opener(name):
        return lambda: course.open(name)

    names = list(course.files)
    scos_index = [{"title": s.title, "href": s.href} for s in scos]
    if activities is not None:
        index = {"package": str(package_id), "standard": "cmi5", "activities": activities, "scos": scos_index}
    else:
        index = {"package": str(package_id), "layout": PLAYER_LAYOUT, "self_open": not talks_scorm(course),
                 "scos": scos_index}
    version = store.put_version(index, ((name, opener(name)) for name in names))
    size = sum(entry["size"] for entry in store.read_version(version)["files"].values())
    return version, size


def write_remote_zip(out, title: str, scorm_version: str, package_id: uuid.UUID, content_url: str,
                     scos: list[Sco], sealed: bool = False) -> None:
    """The thin zip: our manifest (one item per SCO), the launcher page, script and style.

    ``sealed``: the launcher keeps its seal mark, for the client to fill in (see ``sealing``).
    """
    folder = PACKAGE_SOURCE / "remote"
    config = json.dumps({"contentOrigin": content_url, "scormVersion": scorm_version,
                         "launchUrls": [launch_url(content_url, package_id, n) for n in range(len(scos))],
                         "seatUrl": f"{content_url}/{package_id}/seat",
                         "limitUrl": f"{content_url}/{package_id}/limit", "sealed": sealed},
                        ensure_ascii=True)
    launcher = (folder / "remote-launcher.js").read_text(encoding="utf-8")
    if LAUNCHER_MARK not in launcher or SEAL_MARK not in launcher:
        raise RuntimeError("scorm_package/remote/remote-launcher.js lost its configuration or seal mark")
    launcher = with_seal_library(launcher, "scorm_package/remote/remote-launcher.js")
    if not sealed:
        launcher = launcher.replace(SEAL_MARK, "null", 1)
    items = [{"title": sco.title if len(scos) > 1 else title, "href": f"index.html?sco={n}",
              "settings": [(name, sco.settings[name]) for name in ITEM_SETTINGS[scorm_version]
                           if name in sco.settings]}
             for n, sco in enumerate(scos)]
    manifest = templates.get_template(f"remote/imsmanifest_{scorm_version}.xml").render(
        ids=ids(package_id), title=title, items=items, files=sorted(REMOTE_LAUNCHER_FILES))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", manifest.encode("utf-8"))
        archive.writestr("index.html", templates.get_template("remote/index.html").render(title=title))
        archive.writestr("remote-launcher.js", launcher.replace(LAUNCHER_MARK, config, 1))
        archive.writestr("remote-launcher.css", (folder / "remote-launcher.css").read_bytes())


def au_pages(index: dict) -> set[str]:
    """The AU launch pages of a cmi5 version (served with the tracker added); empty for SCORM."""
    if index.get("standard") != "cmi5":
        return set()
    return {sco["href"].partition("?")[0] for sco in index["scos"]}


def remote_cmi5_structure(structure: bytes, package_id: uuid.UUID, content_url: str) -> bytes:
    """The tool's own cmi5.xml with each AU's url on the content origin (``launch/<n>``); checked before
    anything is published (PackageError)."""
    count = len(read_cmi5(structure))
    return absolute_cmi5(structure, [launch_url(content_url, package_id, n) for n in range(count)])


def write_remote_cmi5_zip(out, structure: bytes) -> None:
    """The remote cmi5 package: that course structure alone (``remote_cmi5_structure``).

    The LMS launches ``CONTENT_URL/<package>/launch/<n>`` with its own launch parameters; no
    launcher, no relay: the AU talks to the LMS's LRS itself.
    """
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(CMI5_FILE, structure)
