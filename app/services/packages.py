"""Building SCORM packages: the one function the CLI and the admin download share.

A package is a zip an LMS imports. What goes into it lives in ``scorm_package/``
(manifest templates, the tracker, the placeholder course); this module picks
the content, writes the manifest or keeps the authoring tool's, adds the
tracker configured for the client, and records the issue.

Content comes in three shapes:
- none: the placeholder course;
- a folder (or zip) with ``index.html`` at its root: plain web content, wrapped
  in our own manifest;
- a folder or zip with ``imsmanifest.xml`` at its root (an authoring tool's
  export): its manifest is kept and every SCO launch file gets the tracker.

Beacon keys are stored hashed, so a deployed package gets a key of its own,
issued here in the same transaction as its ``PackageIssue``: each package's key
can be told apart (its prefix is in the audit entry) and rotating the client's
keys retires every package at once. A perpetual-licence client gets an
untracked package: no tracker, no key, no server address.

A remote package (tracked clients only) is a thin zip: our manifest, a launcher
page and script that open the course from this server (``/remote/<package_id>/``)
in a full-size iframe and relay its SCORM calls to the LMS. The course itself
is kept in ``RemoteContent`` with the package's beacon key; ``republish``
replaces it, and the next launch on every LMS shows the new content.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import stat
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..identity import InvalidIdentity, has_control_characters, normalise_course_title
from ..models import Client, PackageIssue, RemoteContent, utcnow
from . import audit
from . import clients as client_service

PACKAGE_SOURCE = Path(__file__).resolve().parent.parent.parent / "scorm_package"
SCORM_VERSIONS = ("1.2", "2004")
MODES = ("deployed", "remote")
TRACKER_FILE = "scorm-usage-tracker.js"
BEACON_PATH = "/api/v1/beacons"
CONFIG_MARK = "/*@TRACKER_CONFIG@*/ null"
LAUNCHER_MARK = "/*@LAUNCHER_CONFIG@*/ null"
REMOTE_API_FILE = "scorm-remote-api.js"
REMOTE_PREFIX = "/remote"
RESERVED_FILES = (TRACKER_FILE, REMOTE_API_FILE)
MAX_FILES = 20_000
MAX_CONTENT_BYTES = 2 * 1024**3
MAX_REMOTE_BYTES = 512 * 1024**2  # PostgreSQL's bytea holds 1 GiB; every app server may cache it
# Left out of wrapped content: operating-system clutter, never course files.
JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")
_HTML = (".html", ".htm")

_templates = Environment(
    loader=FileSystemLoader(str(PACKAGE_SOURCE)),
    autoescape=select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True),
    keep_trailing_newline=True,
)


class PackageError(ValueError):
    """The package cannot be built as asked; the message says why and is safe to show."""


@dataclass
class BuiltPackage:
    """What a build made: the recorded issue, and facts for the person who asked."""

    issue: PackageIssue
    mode: str
    scorm_version: str
    launch_files: list[str]
    key_prefix: str | None
    server_url: str | None
    size: int = 0

    @property
    def filename(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.issue.course_title.lower()).strip("-")[:60] or "course"
        return f"{slug}-scorm{self.scorm_version.replace('.', '')}.zip"


# --- content ---------------------------------------------------------------------


@dataclass
class Content:
    """Course files by their path in the package, read lazily."""

    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    manifest: bytes | None = None  # an authoring tool's imsmanifest.xml, kept as it is

    def read(self, name: str) -> bytes:
        return self.files[name]()


def safe_member_name(raw: str) -> str:
    """A relative path that stays inside the package, or PackageError."""
    if has_control_characters(raw) or "\\" in raw:
        raise PackageError(f"content path {raw!r} has control characters or backslashes")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise PackageError(f"content path {raw!r} is absolute")
    parts = raw.split("/")
    if any(part == ".." for part in parts):
        raise PackageError(f"content path {raw!r} leaves the package ('..')")
    name = "/".join(part for part in parts if part not in ("", "."))
    if not name:
        raise PackageError(f"content path {raw!r} is empty")
    return name


def _add(content: Content, name: str, reader: Callable[[], bytes], seen: dict[str, str]) -> None:
    folded = name.casefold()
    if folded in seen:
        raise PackageError(f"content has {seen[folded]!r} and {name!r}: names that differ only in case "
                           "clash on many LMS servers")
    seen[folded] = name
    content.files[name] = reader


def _content_from_zip(archive: zipfile.ZipFile) -> Content:
    content, seen, total = Content(), {}, 0
    infos = archive.infolist()
    if len(infos) > MAX_FILES:
        raise PackageError(f"the zip holds more than {MAX_FILES} files")
    for info in infos:
        name = safe_member_name(info.filename)
        if info.is_dir() or JUNK.search(info.filename):
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"content path {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise PackageError(f"content path {info.filename!r} is encrypted")
        total += info.file_size
        if total > MAX_CONTENT_BYTES:
            raise PackageError(f"the content is larger than {MAX_CONTENT_BYTES // 1024**2} MiB unpacked")
        _add(content, name, (lambda i=info: archive.read(i)), seen)
    return content


def _content_from_folder(folder: Path) -> Content:
    content, seen, total = Content(), {}, 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise PackageError(f"content path {relative!r} is a symbolic link")
        if path.is_dir() or JUNK.search(relative + ("/" if path.is_dir() else "")):
            continue
        name = safe_member_name(relative)
        total += path.stat().st_size
        if len(content.files) >= MAX_FILES or total > MAX_CONTENT_BYTES:
            raise PackageError("the content folder is too large for a package")
        _add(content, name, path.read_bytes, seen)
    return content


def _open_content(source, stack: list) -> Content:
    """A folder path, a zip path, or a binary file holding a zip."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            content = _content_from_folder(path)
            return _classify(content)
        if not path.is_file():
            raise PackageError(f"content {str(path)!r} is neither a folder nor a zip file")
        stream = path.open("rb")
        stack.append(stream)
    else:
        stream = source
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError):
        raise PackageError("the content is not a folder or a readable zip file") from None
    stack.append(archive)
    return _classify(_content_from_zip(archive))


def _classify(content: Content) -> Content:
    if "imsmanifest.xml" in content.files:
        content.manifest = content.read("imsmanifest.xml")
        return content
    if "index.html" in content.files:
        return content
    nested = sorted({n.rsplit("/", 1)[0] for n in content.files if n.endswith("/imsmanifest.xml")})
    hint = f" (found one in {nested[0]}/: zip that folder's contents instead)" if nested else ""
    raise PackageError("the content needs index.html or imsmanifest.xml at its root" + hint)


# --- manifests -------------------------------------------------------------------

_NS_VERSION = {
    "http://www.adlnet.org/xsd/adlcp_rootv1p2": "1.2",
    "http://www.imsproject.org/xsd/imscp_rootv1p1p2": "1.2",
    "http://www.adlnet.org/xsd/adlcp_v1p3": "2004",
}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(element: ElementTree.Element, local_name: str) -> str | None:
    for key, value in element.attrib.items():
        if _local(key).lower() == local_name.lower():
            return value
    return None


def read_manifest(data: bytes) -> tuple[str, list[str]]:
    """(SCORM version, launch files of its SCOs) of an authoring tool's manifest."""
    head = data[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise PackageError("imsmanifest.xml declares a DOCTYPE or entities; a SCORM manifest needs neither")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise PackageError(f"imsmanifest.xml is not well-formed XML ({exc})") from None
    if _local(root.tag) != "manifest":
        raise PackageError("imsmanifest.xml has no <manifest> root element")

    version = None
    for element in root.iter():
        if _local(element.tag) == "schemaversion" and element.text:
            text = element.text.strip()
            if text == "1.2":
                version = "1.2"
            elif "2004" in text or "1.3" in text:
                version = "2004"
            break
    if version is None:
        namespaces = {element.tag.split("}")[0][1:] for element in root.iter() if element.tag.startswith("{")}
        namespaces |= {key.split("}")[0][1:] for element in root.iter() for key in element.attrib
                       if key.startswith("{")}
        found = {_NS_VERSION[ns] for ns in namespaces if ns in _NS_VERSION}
        if len(found) == 1:
            version = found.pop()
    if version is None:
        raise PackageError("cannot tell the SCORM version of imsmanifest.xml (no schemaversion)")

    xml_base = "{http://www.w3.org/XML/1998/namespace}base"
    launches: list[str] = []
    for resources in root.iter():
        if _local(resources.tag) != "resources":
            continue
        outer = resources.get(xml_base, "")
        for resource in resources:
            if _local(resource.tag) != "resource" or (_attr(resource, "scormtype") or "").lower() != "sco":
                continue
            href = resource.get("href")
            if not href:
                continue
            target = unquote(urlsplit(outer + resource.get(xml_base, "") + href).path)
            name = safe_member_name(posixpath.normpath(target))
            if name not in launches:
                launches.append(name)
    if not launches:
        assets = [r for r in root.iter() if _local(r.tag) == "resource" and r.get("href")
                  and (_attr(r, "scormtype") or "").lower() == "asset"]
        if assets:
            raise PackageError(
                "imsmanifest.xml lists only assets (adlcp:scormtype=\"asset\"): an LMS gives an asset no SCORM "
                "API, so the tracker could never read the learner and no launch would be counted. Export the "
                "course again as SCORM with at least one SCO, or leave imsmanifest.xml out and give the content "
                "with index.html at its root (the package is then one SCO that launches index.html)")
        raise PackageError("imsmanifest.xml lists no SCO with a launch file (adlcp:scormtype=\"sco\" and href)")
    return version, launches


def _ids(package_id: uuid.UUID) -> dict[str, str]:
    tail = package_id.hex
    return {"manifest": f"MANIFEST-{tail}", "organization": f"ORG-{tail}", "item": f"ITEM-{tail}",
            "resource": f"RES-{tail}"}


def render_manifest(scorm_version: str, title: str, package_id: uuid.UUID, launch: str, files: list[str]) -> bytes:
    template = _templates.get_template(f"imsmanifest_{scorm_version}.xml")
    return template.render(ids=_ids(package_id), title=title, launch=launch, files=files).encode("utf-8")


# --- the tracker -------------------------------------------------------------------


def tracker_source() -> str:
    """tracker.js as shipped: its header comment, comment lines and indentation left out.

    Only whole-line comments go, so no string or regular expression is touched.
    """
    source = (PACKAGE_SOURCE / "tracker.js").read_text(encoding="utf-8")
    if source.startswith("/*"):
        source = source[source.index("*/") + 2:]
    lines = (line.strip() for line in source.splitlines())
    return "/* SCORM usage tracker */\n" + "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"


def configured_tracker(*, beacon_url: str, key: str, course: str, package_id: uuid.UUID, scorm_version: str) -> bytes:
    source = tracker_source()
    if CONFIG_MARK not in source:
        raise RuntimeError("scorm_package/tracker.js lost its configuration mark")
    config = json.dumps({"url": beacon_url, "key": key, "course": course, "packageId": str(package_id),
                         "scormVersion": scorm_version}, ensure_ascii=True)
    return source.replace(CONFIG_MARK, config, 1).encode("utf-8")


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


def check_server_url(raw: str | None) -> str:
    if not raw or not raw.strip():
        raise PackageError("a tracked package needs the server's public URL (set PUBLIC_URL or --server-url)")
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local):
        raise PackageError(f"server URL {raw!r} must be https://host[:port] as learners' browsers reach it")
    if parts.query or parts.fragment or parts.username:
        raise PackageError(f"server URL {raw!r} must not carry a query, fragment or user")
    return value


# --- the build ----------------------------------------------------------------------


def _one_launch_file(launches: list[str]) -> None:
    if len(launches) > 1:
        raise PackageError(f"a remote package opens one launch file; the content's manifest lists "
                           f"{len(launches)} SCOs")


@contextlib.contextmanager
def _use_case(session: Session):
    """One build or republish: roll back on any failure; close the content files it opened."""
    opened: list = []
    try:
        yield opened
    except BaseException:
        session.rollback()
        raise
    finally:
        for thing in reversed(opened):
            thing.close()


def _course(content, title: str, scorm_version: str, tracked: bool, opened: list) -> tuple[Content, list[str]]:
    """The course to package and its launch files, checked."""
    if content is None:
        files = _placeholder(title, scorm_version)
        course = Content(files={name: (lambda b=body: b) for name, body in files.items()})
    else:
        course = _open_content(content, opened)
    if course.manifest is not None:
        found_version, launches = read_manifest(course.manifest)
        if found_version != scorm_version:
            raise PackageError(f"the content is a SCORM {found_version} package, not SCORM {scorm_version}")
        missing = [name for name in launches if name not in course.files]
        if missing:
            raise PackageError(f"imsmanifest.xml launches {missing[0]!r}, which is not in the content")
    else:
        launches = ["index.html"]
    if tracked:
        wrong = [name for name in launches if not name.lower().endswith(_HTML)]
        if wrong:
            raise PackageError(f"launch file {wrong[0]!r} is not an HTML page the tracker can be added to")
        reserved = [name for name in RESERVED_FILES if name in course.files]
        if reserved:
            raise PackageError(f"the content already holds {reserved[0]}: it was built here before; "
                               "wrap the original course instead")
    return course, launches


def build_package(session: Session, *, client: Client, course_title: str, scorm_version: str,
                  out: str | Path | BinaryIO, content: str | Path | BinaryIO | None = None,
                  mode: str = "deployed", server_url: str | None, issued_by: str) -> BuiltPackage:
    """Write a SCORM package for ``client`` to ``out`` and record its issue. Commits.

    ``content``: None (placeholder course), a folder, a zip path or a binary
    file holding a zip (an upload). ``out``: a path or a writable binary file.
    ``server_url``: the server as learners' browsers reach it (PUBLIC_URL);
    unused for a perpetual-licence client, whose package is untracked
    (a remote package is refused for it). ``issued_by``: the staff e-mail, or "cli".
    Raises PackageError with a message fit for the person who asked.
    """
    if not client.active:
        raise PackageError(f"client {client.slug!r} is inactive; reactivate it before building packages")
    if scorm_version not in SCORM_VERSIONS:
        raise PackageError(f"SCORM version must be one of {', '.join(SCORM_VERSIONS)}")
    if mode not in MODES:
        raise PackageError(f"mode must be one of {', '.join(MODES)}")
    tracked = client.tracked
    if mode == "remote" and not tracked:
        raise PackageError("a perpetual-licence client gets untracked packages, which are always deployed; "
                           "build without --mode remote")
    try:
        title = normalise_course_title(course_title)
    except InvalidIdentity as exc:
        raise PackageError(str(exc)) from None
    if tracked:
        server_url = check_server_url(server_url)

    with _use_case(session) as opened:
        course, launches = _course(content, title, scorm_version, tracked, opened)
        if mode == "remote":
            _one_launch_file(launches)

        issue = PackageIssue(package_id=uuid.uuid4(), client_id=client.id, course_title=title,
                             scorm_version=scorm_version, mode=mode if tracked else "untracked",
                             issued_by=issued_by)
        session.add(issue)
        key = client_service.add_key(client) if tracked else None
        if mode == "remote":
            session.flush()
            session.add(RemoteContent(package_id=issue.package_id, launch_file=launches[0], beacon_key=key,
                                      content=_content_zip(course)))
            _write_remote_zip(out, title, scorm_version, issue.package_id, server_url, launches[0])
        else:
            _write_zip(out, course, launches, title, scorm_version, issue.package_id,
                       tracker=configured_tracker(beacon_url=server_url + BEACON_PATH, key=key, course=title,
                                                  package_id=issue.package_id, scorm_version=scorm_version)
                       if tracked else None)
        session.flush()
        built = BuiltPackage(issue=issue, mode=issue.mode, scorm_version=scorm_version, launch_files=launches,
                             key_prefix=key[:8] if key else None, server_url=server_url if tracked else None)
        audit.record(session, issued_by, "package.issue", client.id, None, {
            "package_id": str(issue.package_id), "course": title, "scorm_version": scorm_version,
            "mode": issue.mode, "wrapped": content is not None, "key_prefix": built.key_prefix,
            "server_url": built.server_url,
        })
        session.commit()
        return built


def republish(session: Session, *, package_id: uuid.UUID, content: str | Path | BinaryIO, actor: str) -> RemoteContent:
    """Replace a remote package's course on the server; every LMS shows it at the next launch. Commits."""
    remote = session.scalar(select(RemoteContent).where(RemoteContent.package_id == package_id))
    issue = session.scalar(select(PackageIssue).where(PackageIssue.package_id == package_id))
    if remote is None or issue is None:
        raise PackageError(f"package {package_id} is not a remote package")
    with _use_case(session) as opened:
        course, launches = _course(content, issue.course_title, issue.scorm_version, True, opened)
        _one_launch_file(launches)
        before = {"launch_file": remote.launch_file, "bytes": len(remote.content)}
        remote.content = _content_zip(course)
        remote.launch_file = launches[0]
        remote.updated_at = utcnow()
        audit.record(session, actor, "package.republish", issue.client_id, before, {
            "package_id": str(package_id), "launch_file": launches[0], "bytes": len(remote.content)})
        session.commit()
        return remote


def _content_zip(course: Content) -> bytes:
    """The course as one zip for ``RemoteContent`` (at most MAX_REMOTE_BYTES: it lives in a database row)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if course.manifest is not None:
            archive.writestr("imsmanifest.xml", course.manifest)
        for name in course.files:
            if name != "imsmanifest.xml":
                archive.writestr(name, course.read(name))
                if buffer.tell() > MAX_REMOTE_BYTES:
                    raise PackageError(f"a remote package's content is at most {MAX_REMOTE_BYTES // 1024**2} MiB "
                                       "zipped; build a deployed package instead")
    return buffer.getvalue()


REMOTE_LAUNCHER_FILES = ("index.html", "remote-launcher.js", "remote-launcher.css", TRACKER_FILE)


def _write_remote_zip(out, title: str, scorm_version: str, package_id: uuid.UUID, server_url: str,
                      launch: str) -> None:
    folder = PACKAGE_SOURCE / "remote"
    config = json.dumps({"serverOrigin": origin_of(server_url), "scormVersion": scorm_version,
                         "contentUrl": remote_url(server_url, package_id, launch)}, ensure_ascii=True)
    launcher = (folder / "remote-launcher.js").read_text(encoding="utf-8")
    if LAUNCHER_MARK not in launcher:
        raise RuntimeError("scorm_package/remote/remote-launcher.js lost its configuration mark")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", render_manifest(scorm_version, title, package_id, "index.html",
                                                            sorted(REMOTE_LAUNCHER_FILES)))
        archive.writestr("index.html", _templates.get_template("remote/index.html").render(title=title))
        archive.writestr("remote-launcher.js", launcher.replace(LAUNCHER_MARK, config, 1))
        archive.writestr("remote-launcher.css", (folder / "remote-launcher.css").read_bytes())
        archive.writestr(TRACKER_FILE, tracker_source())  # unconfigured: only its API finder is used


def origin_of(url: str) -> str:
    """The origin as a browser writes it (``event.origin``): lower-case host, no default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def remote_url(server_url: str, package_id: uuid.UUID, path: str) -> str:
    return f"{server_url}{REMOTE_PREFIX}/{package_id}/{quote(path)}"


def remote_api_source() -> bytes:
    return (PACKAGE_SOURCE / "remote" / REMOTE_API_FILE).read_bytes()


def _placeholder(title: str, scorm_version: str) -> dict[str, bytes]:
    folder = PACKAGE_SOURCE / "placeholder"
    return {
        "index.html": _templates.get_template("placeholder/index.html")
        .render(title=title, scorm_version=scorm_version).encode("utf-8"),
        "course.css": (folder / "course.css").read_bytes(),
        "course.js": (folder / "course.js").read_bytes(),
    }


def _write_zip(out, course: Content, launches: list[str], title: str, scorm_version: str,
               package_id: uuid.UUID, tracker: bytes | None) -> None:
    names = [name for name in course.files if name != "imsmanifest.xml"]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if course.manifest is not None:
            manifest = course.manifest
        else:
            listed = sorted(names + ([TRACKER_FILE] if tracker else []))
            manifest = render_manifest(scorm_version, title, package_id, launches[0], listed)
        archive.writestr("imsmanifest.xml", manifest)
        if tracker is not None:
            archive.writestr(TRACKER_FILE, tracker)
        for name in names:
            body = course.read(name)
            if tracker is not None and name in launches:
                body = inject_tracker(body, name)
            archive.writestr(name, body)


def package_bytes(session: Session, **kwargs) -> tuple[bytes, BuiltPackage]:
    """``build_package`` into memory, for a download of modest size."""
    buffer = io.BytesIO()
    built = build_package(session, out=buffer, **kwargs)
    data = buffer.getvalue()
    built.size = len(data)
    return data, built
