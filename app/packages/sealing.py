"""Sealed packages: the client's own key turns student IDs and names into HMACs before they leave the LMS.

The key is the client's and never reaches this server. A sealed client's package is
built with a seal mark (``/*@PACKAGE_SEAL@*/ null``) in its tracker (deployed) or its
launcher (remote); the client fills it in with what its key derives, either in the
sealing page (``/seal``, runs only in its browser) or with ``flask package seal``,
which needs no server or database. ``scorm_package/sealing.js`` holds the derivation
and the normalisation both run in the learner's browser; this module holds the same
derivation for the offline command and the tables that make the JavaScript
normalise exactly as ``app/identity/student_ids.py`` does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import unicodedata
import zipfile
from typing import BinaryIO

from app.identity.student_ids import SEALED_VALUE, InvalidIdentity, normalise_student_id
from app.packages.errors import PackageError
from app.packages.source import PACKAGE_SOURCE

SEAL_MARK = "/*@PACKAGE_SEAL@*/ null"
LIBRARY_MARK = "/*@SEAL_LIBRARY@*/"
TABLES_MARK = "/*@SEAL_TABLES@*/ null"
SEALED_PREFIX = "sealed:v1:"
# The files of a package that carry the seal: the tracker (deployed) or the launcher (remote).
SEALED_FILES = ("scorm-usage-tracker.js", "remote-launcher.js")
_SEALED_VALUE = re.compile(r"var SEAL = (\{[^}]*\});")


def is_sealed_value(value: str) -> bool:
    return bool(SEALED_VALUE.match(value))


@functools.cache
def seal_tables() -> dict:
    """Python's own character tables, for sealing.js to normalise as app/identity/student_ids.py does."""
    from app.identity.placeholders import DEFAULT_PLACEHOLDER_IDS as PLACEHOLDER_IDS

    formats: list[list[int]] = []
    shifts: list[list[int]] = []
    folds: dict[str, str] = {}
    # Planes 2-13 (ideographs) have no case, format or space characters, 15-16 are private use:
    # looking at planes 0, 1 and 14 only is the same table, ten times sooner.
    for code in (*range(0x20000), *range(0xE0000, 0xF0000)):
        ch = chr(code)
        if unicodedata.category(ch) == "Cf":
            if formats and formats[-1][1] == code - 1:
                formats[-1][1] = code
            else:
                formats.append([code, code])
        folded = ch.casefold()
        if folded != ch.lower():
            if len(folded) == 1:
                delta = ord(folded) - code
                if shifts and shifts[-1][1] == code - 1 and shifts[-1][2] == delta:
                    shifts[-1][1] = code
                else:
                    shifts.append([code, code, delta])
            else:
                folds[ch] = folded
    spaces = [code for code in range(0x3001) if chr(code).isspace()]
    return {"cf": formats, "space": spaces, "fold": folds, "shift": shifts,
            "placeholders": list(PLACEHOLDER_IDS), "unicode": unicodedata.unidata_version}


@functools.cache
def seal_library() -> str:
    """sealing.js with the tables written in and its header left out."""
    source = (PACKAGE_SOURCE / "sealing.js").read_text(encoding="utf-8")
    source = source[source.index("*/") + 2:].lstrip("\n")
    if TABLES_MARK not in source:
        raise RuntimeError("scorm_package/sealing.js lost its tables mark")
    return source.replace(TABLES_MARK, json.dumps(seal_tables(), ensure_ascii=True, separators=(",", ":")), 1)


def with_seal_library(source: str, where: str) -> str:
    """``source`` with the sealing library written in at its mark (inside the file's own function)."""
    if LIBRARY_MARK not in source:
        raise RuntimeError(f"{where} lost its seal library mark")
    return source.replace(LIBRARY_MARK, seal_library(), 1)


# --- the client's key (the offline command; the page does the same in sealing.js) ---


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def read_client_key(text: str) -> bytes:
    """A client key as written in a key file: 32 random bytes or more, base64url."""
    value = "".join(text.split())
    if not value or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise PackageError("the key file must hold the sealing key in base64url (43 characters)")
    key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if len(key) < 32:
        raise PackageError("a sealing key is 32 random bytes (43 base64url characters)")
    return key


def _derive(key: bytes, label: str) -> bytes:
    return hmac.new(key, f"scorm-usage-seal:v1:{label}".encode(), hashlib.sha256).digest()


def package_seal(key: bytes) -> dict:
    """What a sealed package carries: the ID and name keys derived from the client key, and its key ID."""
    return {"v": 1, "kid": _b64url(_derive(key, "kid"))[:8], "id": _b64url(_derive(key, "id")),
            "name": _b64url(_derive(key, "name"))}


def sealed_student_id(key: bytes, student_id: str) -> str:
    """A learner's sealed ID, as the tracker sends it (for an erasure request). InvalidIdentity if refused."""
    normalised = normalise_student_id(student_id)
    mac = hmac.new(_derive(key, "id"), normalised.encode("utf-8"), hashlib.sha256).digest()
    return SEALED_PREFIX + _b64url(mac)


def seal_zip(source: BinaryIO | str, out: BinaryIO | str, key: bytes) -> dict:
    """Copy a sealed client's package with its seal written in. Returns the seal's key ID and the file sealed."""
    seal = package_seal(key)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"not a zip file: {exc}") from None
    with archive:
        names = archive.namelist()
        target = next((name for name in SEALED_FILES if name in names), None)
        if target is None:
            raise PackageError("this zip is not a tracked package built by this server")
        text = archive.read(target).decode("utf-8")
        if SEAL_MARK not in text:
            found = _SEALED_VALUE.search(text)
            if found:
                kid = json.loads(found.group(1)).get("kid")
                raise PackageError(f"this package is sealed already (key {kid})")
            raise PackageError("this package was built for a client whose packages are not sealed; "
                               "turn sealing on for the client and build it again")
        sealed = text.replace(SEAL_MARK, json.dumps(seal, separators=(",", ":")), 1).encode("utf-8")
        with zipfile.ZipFile(out, "w") as written:
            for info in archive.infolist():
                if info.filename == target:
                    copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    copy.compress_type = zipfile.ZIP_STORED
                    copy.external_attr = info.external_attr
                    written.writestr(copy, sealed)
                else:
                    written.writestr(info, archive.read(info.filename), compress_type=info.compress_type)
    return {"kid": seal["kid"], "file": target}


__all__ = ["InvalidIdentity", "SEALED_FILES", "SEAL_MARK", "is_sealed_value", "package_seal", "read_client_key",
           "seal_library", "seal_tables", "seal_zip", "sealed_student_id", "with_seal_library"]
