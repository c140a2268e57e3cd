"""Reading course content safely: a folder, a zip path or an uploaded zip, never outside itself.

Every member name is checked (no absolute paths, no ``..``, no control characters
or backslashes, no names that differ only in case, no symbolic links, no encrypted
members). A zip is bounded before anything is unpacked and again while it is:

- its central directory is walked before ``zipfile`` parses it, so a zip of a
  million empty entries is refused without building a million ``ZipInfo``;
- only stored and deflated members are read (deflate is decompressed a chunk at a
  time; bzip2 and LZMA would decompress a whole input block at once);
- the unpacked size may not pass ``MAX_CONTENT_BYTES``, nor ``MAX_RATIO`` times the
  zip's real size on disk (a zip bomb): checked on the declared sizes first, then on
  the bytes actually unpacked, counted as they stream, since headers can lie;
- every error of a damaged zip (bad checksum, falsified size, truncated data)
  becomes a ``PackageError`` that says so.

Files are read lazily and in chunks; only pages, scripts and manifests are read
whole, each up to ``MAX_READ_BYTES``.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from app.identity.student_ids import has_control_characters
from app.packages.errors import PackageError

MAX_FILES = 20_000
MAX_CONTENT_BYTES = 2 * 1024**3
# Unpacked bytes per byte of zip. Courses unpack 1-10 x (media is compressed already);
# a zip bomb unpacks a thousand times and more.
MAX_RATIO = 100
RATIO_FREE_BYTES = 64 * 1024**2  # a small zip may always unpack this much
MAX_READ_BYTES = 32 * 1024**2  # a page, script or manifest read whole
_CHUNK = 256 * 1024
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What zipfile and zlib raise on a damaged archive (PackageError, a ValueError, is re-raised first).
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError,
            OSError, ValueError, struct.error, OverflowError, IndexError, KeyError, UnicodeError)
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
    sizes: dict[str, int] = field(default_factory=dict)

    def size(self, name: str) -> int:
        """The file's size as declared (a zip member never unpacks to more)."""
        if name in self.sizes:
            return self.sizes[name]
        return len(self.read(name))

    def read(self, name: str) -> bytes:
        """The whole file: for pages, scripts and manifests, up to MAX_READ_BYTES."""
        if self.sizes.get(name, 0) > MAX_READ_BYTES:
            raise PackageError(f"{name} is larger than {MAX_READ_BYTES // 1024**2} MiB; pages, scripts and "
                               "manifests that large cannot be packaged")
        return self.files[name]()

    def open(self, name: str) -> BinaryIO:
        """The file as a stream (a large video is never read whole into memory)."""
        opener = self.openers.get(name)
        return opener() if opener else io.BytesIO(self.read(name))


def _read_bounded(stream: BinaryIO, name: str) -> bytes:
    parts, size = [], 0
    with stream:
        while chunk := stream.read(_CHUNK):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_READ_BYTES:
                raise PackageError(f"{name} is larger than {MAX_READ_BYTES // 1024**2} MiB; pages, scripts and "
                                   "manifests that large cannot be packaged")
    return b"".join(parts)


def _damaged(name: str, exc: BaseException) -> PackageError:
    reason = {zipfile.BadZipFile: "its checksum, size or header is wrong", EOFError: "its data is cut short",
              zlib.error: "its compressed data is corrupt", NotImplementedError: "its compression is not supported",
              }.get(type(exc), "it cannot be unpacked")
    return PackageError(f"the zip is damaged: {name!r} does not unpack ({reason}); make the zip again")


class _Budget:
    """Bytes actually unpacked, per member and in all, against the zip's limit."""

    def __init__(self, limit: int, archive_bytes: int) -> None:
        self.limit, self.archive_bytes = limit, archive_bytes
        self.seen: dict[str, int] = {}
        self.total = 0

    def refusal(self, total: int) -> PackageError:
        if total > MAX_CONTENT_BYTES:
            return PackageError(f"the content is larger than {MAX_CONTENT_BYTES // 1024**2} MiB unpacked")
        return PackageError(f"the zip unpacks to more than {MAX_RATIO} times its own size "
                            f"({self.archive_bytes // 1024} KiB): it looks like a zip bomb; a course zip unpacks "
                            "to a few times its size at most")

    def account(self, name: str, produced: int) -> None:
        before = self.seen.get(name, 0)
        if produced > before:
            self.seen[name] = produced
            self.total += produced - before
            if self.total > self.limit:
                raise self.refusal(self.total)


class _MemberStream(io.RawIOBase):
    """One zip member, unpacked as it is read: errors become PackageError, bytes are counted."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, budget: _Budget) -> None:
        super().__init__()
        self._name, self._info, self._budget, self._produced = name, info, budget, 0
        self._inner = None
        try:
            self._inner = archive.open(info)
        except PackageError:
            raise
        except _DAMAGED as exc:
            raise _damaged(name, exc) from None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._inner.read(min(len(buffer), _CHUNK))
        except PackageError:
            raise
        except _DAMAGED as exc:
            raise _damaged(self._name, exc) from None
        self._produced += len(data)
        if self._produced > self._info.file_size:
            raise PackageError(f"the zip is damaged: {self._name!r} unpacks to more than its header says; "
                               "make the zip again")
        self._budget.account(self._name, self._produced)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and self._inner is not None:
            try:
                self._inner.close()
            except _DAMAGED:
                pass
        super().close()


class _FileStream(io.RawIOBase):
    """A file of a content folder; a read error says which file, never a traceback."""

    def __init__(self, path: Path, name: str) -> None:
        super().__init__()
        self._name, self._inner = name, None
        try:
            self._inner = path.open("rb")
        except OSError as exc:
            raise PackageError(f"cannot read content file {name!r} ({exc.strerror})") from None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._inner.readinto(buffer)
        except OSError as exc:
            raise PackageError(f"cannot read content file {self._name!r} ({exc.strerror})") from None

    def close(self) -> None:
        if not self.closed and self._inner is not None:
            self._inner.close()
        super().close()


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


def _add(content: Content, name: str, opener: Callable[[], BinaryIO], size: int, seen: dict[str, str]) -> None:
    folded = name.casefold()
    if folded in seen:
        raise PackageError(f"content has {seen[folded]!r} and {name!r}: names that differ only in case "
                           "clash on many LMS servers")
    seen[folded] = name
    content.files[name] = lambda: _read_bounded(opener(), name)
    content.openers[name] = opener
    content.sizes[name] = size


_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5HLL")


def _count_entries(stream: BinaryIO, archive_bytes: int) -> None:
    """Walk the central directory as zipfile will, counting entries; refuse past MAX_FILES.

    zipfile builds an object per entry before anything can be counted, and the
    entry count in the end record is only a claim. Where no end record is found,
    zipfile finds none either and says the file is not a zip.
    """
    tail_bytes = min(archive_bytes, _EOCD.size + 65535)
    stream.seek(archive_bytes - tail_bytes)
    tail = stream.read(tail_bytes)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return
    record_at = archive_bytes - tail_bytes + at
    cd_size = _EOCD.unpack_from(tail, at)[5]
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        stream.seek(record_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size)
        record = stream.read(_ZIP64_EOCD.size)
        if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
            cd_size = _ZIP64_EOCD.unpack(record)[8]
            record_at -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
    start = record_at - cd_size
    if start < 0:
        return
    stream.seek(start)
    position, entries = 0, 0
    while position < cd_size:
        header = stream.read(_CENTRAL_ENTRY.size)
        if len(header) < _CENTRAL_ENTRY.size or header[:4] != b"PK\x01\x02":
            return  # zipfile says what is wrong
        fields = _CENTRAL_ENTRY.unpack(header)
        skip = fields[12] + fields[13] + fields[14]  # name, extra field, comment
        stream.seek(skip, io.SEEK_CUR)
        position += _CENTRAL_ENTRY.size + skip
        entries += 1
        if entries > MAX_FILES:
            raise PackageError(f"the zip holds more than {MAX_FILES} files")


def _content_from_zip(archive: zipfile.ZipFile, archive_bytes: int) -> Content:
    content, seen, declared = Content(), {}, 0
    infos = archive.infolist()
    if len(infos) > MAX_FILES:
        raise PackageError(f"the zip holds more than {MAX_FILES} files")
    budget = _Budget(min(MAX_CONTENT_BYTES, max(MAX_RATIO * archive_bytes, RATIO_FREE_BYTES)), archive_bytes)
    for info in infos:
        name = safe_member_name(info.filename)
        if info.is_dir() or JUNK.search(info.filename):
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"content path {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise PackageError(f"content path {info.filename!r} is encrypted")
        if info.compress_type not in _READABLE_METHODS:
            raise PackageError(f"content path {info.filename!r} is compressed with method {info.compress_type}; "
                               "save the zip with standard (deflate) compression")
        declared += info.file_size
        if declared > budget.limit:
            raise budget.refusal(declared)
        _add(content, name, (lambda i=info, n=name: _MemberStream(archive, i, n, budget)), info.file_size, seen)
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
        size = path.stat().st_size
        total += size
        if len(content.files) >= MAX_FILES or total > MAX_CONTENT_BYTES:
            raise PackageError("the content folder is too large for a package")
        _add(content, name, (lambda p=path, n=name: _FileStream(p, n)), size, seen)
    return content


def open_content(source, stack: list) -> Content:
    """A folder path, a zip path, or a binary file holding a zip; files opened go on ``stack``."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            try:
                content = _content_from_folder(path)
            except OSError as exc:
                raise PackageError(f"cannot read the content folder ({exc.strerror})") from None
            return classify(content)
        if not path.is_file():
            raise PackageError(f"content {str(path)!r} is neither a folder nor a zip file")
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise PackageError(f"cannot read the content zip ({exc.strerror})") from None
        stack.append(stream)
    else:
        stream = source
    try:
        archive_bytes = stream.seek(0, io.SEEK_END)
        _count_entries(stream, archive_bytes)
        stream.seek(0)
        archive = zipfile.ZipFile(stream)
    except PackageError:
        raise
    except _DAMAGED:
        raise PackageError("the content is not a folder or a readable zip file") from None
    stack.append(archive)
    return classify(_content_from_zip(archive, archive_bytes))


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
