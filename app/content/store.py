"""Where remote packages' course files live: a content-addressed store behind one small interface.

A published course is a *version*: a small JSON index (package, files by path with
their SHA-256 and size, the SCO launch addresses) whose own SHA-256 names it.
File bodies are stored once by their SHA-256, so a republish that changes one
page stores one page, and a version once written never changes: a learner still
reading the old version (a long video) keeps reading it while the next launch
opens the new one. The database holds only the current version's name.

``DirectoryStore`` keeps it on disk under ``CONTENT_DIR``::

    blobs/ab/ab12...ef          file bodies, by SHA-256
    versions/0f3a...9c.json     version indexes, by SHA-256 of their JSON

Every file is written to a temporary name in the same folder, flushed to disk and
renamed into place, so a reader never sees half a file and several app machines
may publish into one shared folder (NFS, EFS, CephFS: rename is atomic there too).
Nothing is ever overwritten or deleted in place.

Another store (an S3-compatible bucket) needs only the three methods of
``ContentStore``; ``StoredFile.path`` would then be None and ``url`` a signed
address, or the face would stream ``open()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

VERSION_NAME = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """One file of a version: where it is, how big, and its SHA-256 (the ETag)."""

    path: Path
    size: int
    sha256: str


class ContentStore(Protocol):
    def put_version(self, index: dict, files: Iterable[tuple[str, Callable[[], BinaryIO]]]) -> str:
        """Store ``files`` and a version index made of ``index`` plus the files; return the version name."""

    def read_version(self, version: str) -> dict | None:
        """The version's index, or None (unknown or malformed name)."""

    def open_file(self, version: str, name: str) -> StoredFile | None:
        """A file of a version by its path in the course, or None."""


class DirectoryStore:
    """The content store as a folder (``CONTENT_DIR``), safe to share between machines."""

    def __init__(self, root: str | Path, cache_size: int = 256) -> None:
        self.root = Path(root)
        self._indexes: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # --- writing --------------------------------------------------------------------

    def _write_atomically(self, target: Path, chunks: Iterable[bytes]) -> tuple[str, int]:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".tmp-{secrets.token_hex(8)}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(temporary, "wb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return digest.hexdigest(), size

    def _put_blob(self, opener: Callable[[], BinaryIO]) -> tuple[str, int]:
        incoming = self.root / "blobs" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        staged = incoming / secrets.token_hex(16)

        def chunks():
            with opener() as stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk

        sha256, size = self._write_atomically(staged, chunks())
        final = self._blob_path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            staged.unlink()
        else:
            os.replace(staged, final)
        return sha256, size

    def put_version(self, index: dict, files: Iterable[tuple[str, Callable[[], BinaryIO]]]) -> str:
        entries = {}
        for name, opener in files:
            sha256, size = self._put_blob(opener)
            entries[name] = {"sha256": sha256, "size": size}
        document = json.dumps({**index, "files": entries}, sort_keys=True, separators=(",", ":")).encode()
        version = hashlib.sha256(document).hexdigest()[:32]
        target = self.root / "versions" / f"{version}.json"
        if not target.exists():
            self._write_atomically(target, [document])
        return version

    # --- reading --------------------------------------------------------------------

    def _blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def read_version(self, version: str) -> dict | None:
        if not VERSION_NAME.match(version or ""):
            return None
        with self._lock:
            if version in self._indexes:
                self._indexes.move_to_end(version)
                return self._indexes[version]
        try:
            index = json.loads((self.root / "versions" / f"{version}.json").read_bytes())
        except (OSError, ValueError):
            return None
        with self._lock:
            self._indexes[version] = index
            while len(self._indexes) > self._cache_size:
                self._indexes.popitem(last=False)
        return index

    def open_file(self, version: str, name: str) -> StoredFile | None:
        index = self.read_version(version)
        entry = index["files"].get(name) if index else None
        if entry is None:
            return None
        path = self._blob_path(entry["sha256"])
        if not path.is_file():
            return None
        return StoredFile(path=path, size=entry["size"], sha256=entry["sha256"])
