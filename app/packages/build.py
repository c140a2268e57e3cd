"""The use cases: build a package (deployed, untracked or remote) and republish a remote one.

Beacon keys are stored hashed, so a tracked package gets a key of its own, issued
here in the same transaction as its ``PackageIssue``: each package's key can be
told apart (its prefix is in the audit entry) and rotating the client's keys
retires every package at once. A perpetual-licence client gets an untracked
package: no tracker, no key, no server address.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit
from app.clients import services as client_service
from app.identity.student_ids import InvalidIdentity, normalise_course_title
from app.models import Client, PackageIssue, RemoteContent, utcnow
from app.packages import remote, remote_scan
from app.packages.deployed import write_deployed_zip
from app.packages.errors import PackageError, storing
from app.packages.manifest import Sco, read_manifest, read_scos
from app.packages.source import placeholder
from app.packages.tracker import BEACON_PATH, configured_tracker, talks_scorm
from app.packages.xapi_manifest import CMI5_FILE, STANDARD_FILES, STANDARD_NAMES, format_name, read_standard
from app.packages.zipsafety import Content, open_content

SCORM_VERSIONS = ("1.2", "2004")
STANDARDS = ("cmi5", "tincan")  # formats that come from the content (cmi5.xml, tincan.xml), never asked for
MODES = ("deployed", "remote")
_HTML = (".html", ".htm")


@dataclass
class BuiltPackage:
    """What a build made: the recorded issue, and facts for the person who asked."""

    issue: PackageIssue
    mode: str
    scorm_version: str  # the package's format: "1.2", "2004", "cmi5" or "tincan"
    launch_files: list[str]
    key_prefix: str | None
    server_url: str | None
    size: int = 0
    content_url: str | None = None  # remote: the first SCO's launch page on the content origin
    warnings: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.issue.course_title.lower()).strip("-")[:60] or "course"
        if self.scorm_version in STANDARDS:
            return f"{slug}-{self.scorm_version}.zip"
        return f"{slug}-scorm{self.scorm_version.replace('.', '')}.zip"


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


def _course(content, title: str, scorm_version: str | None, tracked: bool,
            opened: list) -> tuple[Content, list[str], str]:
    """The course to package, its launch files and its format (a SCORM version, "cmi5" or "tincan"), checked."""
    if content is None:
        if scorm_version is None:
            raise PackageError("a package without content needs a SCORM version (1.2 or 2004)")
        files = placeholder(title, scorm_version)
        course = Content(files={name: (lambda b=body: b) for name, body in files.items()})
    else:
        course = open_content(content, opened)
    if course.standard is not None:
        fmt = course.standard
        if scorm_version is not None:
            raise PackageError(f"the content is a {STANDARD_NAMES[fmt]} export ({STANDARD_FILES[fmt]}, no "
                               "imsmanifest.xml): build it without a SCORM version; its format comes from "
                               "the content")
        launches = _standard_launches(course, fmt)
    elif scorm_version is None:
        raise PackageError("the content is SCORM or a plain course: say which SCORM version to build "
                           "(--scorm 1.2 or 2004); only cmi5 and Tin Can exports carry their format")
    elif course.manifest is not None:
        fmt = scorm_version
        found_version, launches = read_manifest(course.manifest)
        if found_version != scorm_version:
            raise PackageError(f"the content is a SCORM {found_version} package, not SCORM {scorm_version}")
        missing = [name for name in launches if name not in course.files]
        if missing:
            raise PackageError(f"imsmanifest.xml launches {missing[0]!r}, which is not in the content")
    else:
        fmt = scorm_version
        launches = ["index.html"]
    if tracked:
        wrong = [name for name in launches if not name.lower().endswith(_HTML)]
        if wrong:
            raise PackageError(f"launch file {wrong[0]!r} is not an HTML page the tracker can be added to")
        reserved = [name for name in (*remote.RESERVED_FILES, "remote-launcher.js") if name in course.files]
        if reserved:
            raise PackageError(f"the content already holds {reserved[0]}: it was built here before; "
                               "wrap the original course instead")
    return course, launches, fmt


def _standard_launches(course: Content, fmt: str) -> list[str]:
    """The launch pages of a cmi5 or Tin Can export's AUs, each inside the content."""
    filename = STANDARD_FILES[fmt]
    units = read_standard(fmt, course.read(filename))
    launches: list[str] = []
    for unit in units:
        if unit.absolute:
            raise PackageError(f"{filename}: {unit.id!r} launches {unit.url!r}, a page outside the package; the "
                               "package holds the course itself, so every launch URL must be a page of the "
                               "content (relative)")
        if unit.launch not in course.files:
            raise PackageError(f"{filename}: {unit.id!r} launches {unit.launch!r}, which is not in the content")
        if unit.launch not in launches:
            launches.append(unit.launch)
    return launches


def _activities(course: Content) -> list[str] | None:
    """A cmi5 or Tin Can export's launchable activity IDs, for its tracker (None for SCORM)."""
    if course.standard is None:
        return None
    return [unit.id for unit in read_standard(course.standard, course.read(STANDARD_FILES[course.standard]))]


def _scos(course: Content, title: str) -> tuple[list[Sco], list[str]]:
    """A course's SCO items for a remote package, and notes on what it cannot carry."""
    if course.manifest is None:
        return [Sco(title=title, launch="index.html")], []
    _version, scos, notes = read_scos(course.manifest)
    remote.check_scos(course, scos)
    return scos, notes


def _remote_units(course: Content, title: str) -> tuple[list[Sco], list[str] | None, list[str]]:
    """What a remote package launches: (its SCO items or cmi5 AUs, the AUs' IDs or None for SCORM, warnings).

    A cmi5 AU is opened by the LMS itself, top-level or in its own frame, as it would be deployed:
    the warnings about the SCORM player's frames do not apply to it.
    """
    if course.standard == "cmi5":
        units = read_standard("cmi5", course.read(CMI5_FILE))
        return [Sco(title=u.title or title, launch=u.launch, query=u.query) for u in units], [u.id for u in units], []
    scos, notes = _scos(course, title)
    return scos, None, remote_scan.remote_warnings(course, notes, scos)


def _remote_settings(content_url, store, server_url):
    from flask import current_app

    if content_url is None:
        content_url = current_app.config.get("CONTENT_URL")
    if store is None:
        store = current_app.extensions["content_store"]
    return remote.check_content_url(content_url, server_url), store


def build_package(session: Session, *, client: Client, course_title: str, scorm_version: str | None,
                  out: str | Path | BinaryIO, content: str | Path | BinaryIO | None = None,
                  mode: str = "deployed", server_url: str | None, issued_by: str,
                  content_url: str | None = None, store=None) -> BuiltPackage:
    """Write a SCORM package for ``client`` to ``out`` and record its issue. Commits.

    ``content``: None (placeholder course), a folder, a zip path or a binary
    file holding a zip (an upload). ``scorm_version``: "1.2" or "2004" for SCORM
    and plain content; None for a cmi5 or Tin Can export, whose format comes from it.
    ``out``: a path or a writable binary file.
    ``server_url``: the server as learners' browsers reach it (PUBLIC_URL);
    unused for a perpetual-licence client, whose package is untracked
    (a remote package is refused for it). ``issued_by``: the staff e-mail, or "cli".
    A remote build publishes to ``store`` (default: the app's content store) and
    points at ``content_url`` (default: the app's CONTENT_URL).
    Raises PackageError with a message fit for the person who asked.
    """
    if not client.active:
        raise PackageError(f"client {client.slug!r} is inactive; reactivate it before building packages")
    if scorm_version is not None and scorm_version not in SCORM_VERSIONS:
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
    if mode == "remote":
        content_url, store = _remote_settings(content_url, store, server_url)

    with _use_case(session) as opened:
        course, launches, scorm_version = _course(content, title, scorm_version, tracked, opened)
        if mode == "remote" and course.standard == "tincan":
            raise PackageError("a remote xAPI (Tin Can) package cannot be built: Tin Can defines no absolute "
                               "launch URL an LMS must open, so the course must travel in the package; build "
                               "it deployed (or export the course as cmi5 for a remote package)")
        if mode == "remote" and course.standard == "cmi5" and client.sealed:
            raise PackageError("a sealed client cannot get a remote cmi5 package: its LMS would send the learner's "
                               "plain ID to this server in the launch URL; build it deployed")
        issue = PackageIssue(package_id=uuid.uuid4(), client_id=client.id, course_title=title,
                             scorm_version=scorm_version, mode=mode if tracked else "untracked",
                             issued_by=issued_by)
        session.add(issue)
        key = client_service.add_key(client) if tracked else None
        warnings: list[str] = []
        if mode == "remote":
            scos, activities, warnings = _remote_units(course, title)
            structure = (remote.remote_cmi5_structure(course.read(CMI5_FILE), issue.package_id, content_url)
                         if activities is not None else None)
            with storing("the course to the content store"):
                version, size = remote.publish(store, course, scos, issue.package_id, activities)
            session.flush()
            session.add(RemoteContent(package_id=issue.package_id, launch_file=scos[0].launch, beacon_key=key,
                                      content_version=version, content_bytes=size, sco_count=len(scos)))
            with storing("the package file"):
                if structure is not None:
                    remote.write_remote_cmi5_zip(out, structure)
                else:
                    remote.write_remote_zip(out, title, scorm_version, issue.package_id, content_url, scos,
                                            sealed=client.sealed)
            launches = [sco.href for sco in scos]
        else:
            with storing("the package file"):
                write_deployed_zip(out, course, launches, title, scorm_version, issue.package_id,
                                   tracker=configured_tracker(beacon_url=server_url + BEACON_PATH, key=key,
                                                              course=title, package_id=issue.package_id,
                                                              scorm_version=scorm_version,
                                                              self_open=(course.standard is None
                                                                         and not talks_scorm(course)),
                                                              activities=_activities(course),
                                                              sealed="package" if client.sealed else None)
                                   if tracked else None)
        session.flush()
        built = BuiltPackage(issue=issue, mode=issue.mode, scorm_version=scorm_version, launch_files=launches,
                             key_prefix=key[:8] if key else None, server_url=server_url if tracked else None,
                             content_url=remote.launch_url(content_url, issue.package_id) if mode == "remote"
                             else None, warnings=warnings)
        audit.record(session, issued_by, "package.issue", client.id, None, {
            "package_id": str(issue.package_id), "course": title, "scorm_version": scorm_version,
            "mode": issue.mode, "wrapped": content is not None, "key_prefix": built.key_prefix,
            "server_url": built.server_url,
        })
        session.commit()
        return built


def republish(session: Session, *, package_id: uuid.UUID, content: str | Path | BinaryIO, actor: str,
              store=None) -> RemoteContent:
    """Replace a remote package's course on the server; every LMS shows it at the next launch. Commits.

    The new course must have as many SCO items as the thin package on the LMS
    (each of its items opens one SCO by its place). Warnings about what may not
    work remotely are left on ``remote.warnings`` (not stored).
    """
    found = session.execute(select(RemoteContent, PackageIssue)
                            .join(PackageIssue, PackageIssue.package_id == RemoteContent.package_id)
                            .where(RemoteContent.package_id == package_id)).one_or_none()
    if found is None:
        raise PackageError(f"package {package_id} is not a remote package")
    row, issue = found
    if store is None:
        from flask import current_app

        store = current_app.extensions["content_store"]
    cmi5 = issue.scorm_version == "cmi5"
    with _use_case(session) as opened:
        course, _launches, found = _course(content, issue.course_title, None if cmi5 else issue.scorm_version,
                                           True, opened)
        if cmi5 and found != "cmi5":
            raise PackageError(f"the package on the LMS is a cmi5 package and the new content is "
                               f"{format_name(found)}: republish a cmi5 export")
        scos, activities, warnings = _remote_units(course, issue.course_title)
        if len(scos) != row.sco_count:
            items = "AU(s)" if cmi5 else "SCO item(s)"
            raise PackageError(f"the package on the LMS has {row.sco_count} {items} and the new content "
                               f"has {len(scos)}: build a new remote package for it instead")
        before = {"version": row.content_version, "launch_file": row.launch_file, "bytes": row.content_bytes}
        with storing("the course to the content store"):
            version, size = remote.publish(store, course, scos, package_id, activities)
        row.content_version, row.content_bytes, row.launch_file = version, size, scos[0].launch
        row.updated_at = utcnow()
        audit.record(session, actor, "package.republish", issue.client_id, before, {
            "package_id": str(package_id), "version": version, "launch_file": row.launch_file, "bytes": size})
        session.commit()
        row.warnings = warnings
        return row


def remote_content(session: Session, package_id: uuid.UUID) -> RemoteContent | None:
    """A remote package's current course on the server (None for a deployed or untracked package)."""
    return session.scalar(select(RemoteContent).where(RemoteContent.package_id == package_id))


def package_bytes(session: Session, **kwargs) -> tuple[bytes, BuiltPackage]:
    """``build_package`` into memory, for a download of modest size."""
    buffer = io.BytesIO()
    built = build_package(session, out=buffer, **kwargs)
    data = buffer.getvalue()
    built.size = len(data)
    return data, built


IN_MEMORY_DOWNLOAD = 16 * 1024**2


def package_file(session: Session, **kwargs) -> tuple[BinaryIO, BuiltPackage]:
    """``build_package`` for a download of any size: built in an anonymous temporary file, so a
    large course never sits in a worker's memory; a package up to ``IN_MEMORY_DOWNLOAD`` comes
    back in memory, a larger one as that file (the caller closes it; Flask's ``send_file`` does).
    """
    with storing("the package file"):
        spool = tempfile.TemporaryFile()
    try:
        built = build_package(session, out=spool, **kwargs)
        built.size = spool.tell()
        spool.seek(0)
        if built.size <= IN_MEMORY_DOWNLOAD:
            with spool:
                return io.BytesIO(spool.read()), built
    except BaseException:
        spool.close()
        raise
    return spool, built
