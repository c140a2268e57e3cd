"""Reading course content safely: a folder, a zip path or an uploaded zip, never outside itself.

Every member name is checked (no absolute paths, no ``..``, no control characters
or backslashes, no names that differ only in case, no symbolic links, no encrypted
members) and the size is bounded before anything is read. Files are read lazily,
so a build holds one course file in memory at a time.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ...identity import has_control_characters
from .errors import PackageError

MAX_FILES = 20_000
MAX_CONTENT_BYTES = 2 * 1024**3
# Left out of wrapped content: operating-system clutter, never course files.
JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")


@dataclass
class Content:
    """Course files by their path in the package, read lazily."""

    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    manifest: bytes | None = None  # an authoring tool's imsmanifest.xml, kept as it is
    # "cmi5" (cmi5.xml) or "tincan" (tincan.xml) for an xAPI export without imsmanifest.xml; its
    # course structure stays one of the files, kept as it is.
    standard: str | None = None
    openers: dict[str, Callable[[], BinaryIO]] = field(default_factory=dict)

    def read(self, name: str) -> bytes:
        return self.files[name]()

    def open(self, name: str) -> BinaryIO:
        """The file as a stream (a large video is never read whole into memory)."""
        opener = self.openers.get(name)
        return opener() if opener else io.BytesIO(self.read(name))


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


def _add(content: Content, name: str, reader: Callable[[], bytes], seen: dict[str, str],
         opener: Callable[[], BinaryIO] | None = None) -> None:
    folded = name.casefold()
    if folded in seen:
        raise PackageError(f"content has {seen[folded]!r} and {name!r}: names that differ only in case "
                           "clash on many LMS servers")
    seen[folded] = name
    content.files[name] = reader
    if opener is not None:
        content.openers[name] = opener


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
        _add(content, name, (lambda i=info: archive.read(i)), seen, (lambda i=info: archive.open(i)))
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
        _add(content, name, path.read_bytes, seen, (lambda p=path: p.open("rb")))
    return content


def open_content(source, stack: list) -> Content:
    """A folder path, a zip path, or a binary file holding a zip; files opened go on ``stack``."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            content = _content_from_folder(path)
            return classify(content)
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
    return classify(_content_from_zip(archive))


def classify(content: Content) -> Content:
    """Keep an authoring tool's manifest; otherwise insist on index.html at the root."""
    if "imsmanifest.xml" in content.files:
        content.manifest = content.read("imsmanifest.xml")
        return content
    for standard, filename in (("cmi5", "cmi5.xml"), ("tincan", "tincan.xml")):
        if filename in content.files:
            content.standard = standard
            return content
    if "index.html" in content.files:
        return content
    nested = sorted({n.rsplit("/", 1)[0] for n in content.files
                     if n.rsplit("/", 1)[-1] in ("imsmanifest.xml", "cmi5.xml", "tincan.xml") and "/" in n})
    hint = f" (found one in {nested[0]}/: zip that folder's contents instead)" if nested else ""
    raise PackageError("the content needs index.html or imsmanifest.xml at its root (cmi5.xml or tincan.xml for "
                       "a cmi5 or xAPI/Tin Can export)" + hint)
