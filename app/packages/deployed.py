"""A deployed package: the whole course in the zip, its launch pages loading the configured tracker."""

from __future__ import annotations

import shutil
import time
import uuid
import zipfile

from app.packages.manifest import render_manifest
from app.packages.tracker import TRACKER_FILE, inject_tracker
from app.packages.zipsafety import Content

_ZIP64_SAFE = 1024**3


def write_deployed_zip(out, course: Content, launches: list[str], title: str, scorm_version: str,
                       package_id: uuid.UUID, tracker: bytes | None) -> None:
    """The course, its own manifest or course structure (or our manifest), and the tracker (none if untracked)."""
    names = [name for name in course.files if name != "imsmanifest.xml"]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if course.manifest is not None:
            archive.writestr("imsmanifest.xml", course.manifest)
        elif course.standard is None:  # a cmi5 or Tin Can course structure is one of the course's files
            listed = sorted(names + ([TRACKER_FILE] if tracker else []))
            archive.writestr("imsmanifest.xml", render_manifest(scorm_version, title, package_id, launches[0], listed))
        if tracker is not None:
            archive.writestr(TRACKER_FILE, tracker)
        for name in names:
            if tracker is not None and name in launches:
                archive.writestr(name, inject_tracker(course.read(name), name))
                continue
            # Copied a chunk at a time: a course's video never sits whole in memory.
            member = zipfile.ZipInfo(name, time.localtime()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            with course.open(name) as source, archive.open(member, "w", force_zip64=course.size(name) > _ZIP64_SAFE) \
                    as target:
                shutil.copyfileobj(source, target, 1024 * 1024)
