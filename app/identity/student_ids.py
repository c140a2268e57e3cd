"""Learner identity: the one place that normalises student IDs and makes pseudonyms.

A student ID is normalised the same way everywhere (ingest, erasure, health
checks): invisible format characters (Unicode category Cf: zero-width spaces
and joiners, bidi overrides, soft hyphens, BOM) removed, Unicode NFC,
surrounding white space removed (tabs and newlines included), case-folded when
it is an e-mail address (contains ``@``). Empty IDs and IDs with control
characters left inside are refused.

Names are cleaned, never refused: controls and format characters removed,
runs of white space (tabs, newlines) made one space, cut at 255 characters.

For anonymised clients the stored identity is a pseudonym::

    client_key = HMAC-SHA256(PSEUDONYM_SECRET, "client-key:" + client uid)
    mac        = HMAC-SHA256(client_key, normalised student ID)
    pseudonym  = Argon2id(secret=mac, salt=client salt, client's t/m/p)

The HMAC binds pseudonyms to the server's secret (kept out of the database);
the Argon2id step makes guessing IDs slow even for someone who has it. The
parameters are stored with each client, so raising the defaults never changes
an existing client's pseudonyms. A bounded cache keyed by the HMAC (never the
plain value) spares returning learners the Argon2 cost.

Names of anonymised learners are kept only as a keyed digest (HMAC), enough to
notice that one ID arrives with different names, or one name under two IDs (an
LMS that changed its ID scheme), useless to read.

Each learner also keeps the *shape* of its ID (``id_shape``: email, numeric,
uuid, username or other), worked out from the normalised plain ID before it
is pseudonymised; the shape says nothing about the person, and a change of
shape among a client's new learners is how an ID-scheme change shows.

Sealed clients hold a key of their own: their packages send only ``sealed:v1:`` and a
base64url HMAC-SHA256 of the normalised ID (and name), made in the learner's browser
(scorm_package/sealing.js, the same normalisation as here); the server pseudonymises
that value as it would a plain ID. A sealed client's plain IDs and names are refused,
and so are sealed values for any other client.

This is pseudonymisation in the GDPR sense, not anonymisation: whoever holds
the secret, the salt and a candidate ID can confirm it. Deleting a client's
salt (crypto-shredding) makes its pseudonyms unlinkable for good.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import unicodedata
import uuid
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw

MAX_STUDENT_ID_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_COURSE_TITLE_LENGTH = 300


SEALED_VALUE = re.compile(r"^sealed:v1:[A-Za-z0-9_-]{43}$")


class InvalidIdentity(ValueError):
    """A student ID, name or title that cannot be stored; the message is safe to show."""


def check_sealing(sealed: bool, student_id: str, student_name: str = "") -> None:
    """A sealed client takes only sealed IDs (and sealed or empty names); other clients never take them.

    Raises InvalidIdentity with a message that names no value.
    """
    if sealed:
        if not SEALED_VALUE.match(student_id):
            raise InvalidIdentity("this client's packages are sealed: a plain student ID is refused "
                                  "(seal the package with the client's key)")
        if student_name and not SEALED_VALUE.match(student_name):
            raise InvalidIdentity("this client's packages are sealed: a plain student name is refused")
    elif SEALED_VALUE.match(student_id):
        raise InvalidIdentity("this client's packages are not sealed: a sealed student ID is refused")


def has_control_characters(value: str) -> bool:
    """C0/C1 controls (tabs and newlines included) and lone surrogates."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentity(f"{what} is not valid Unicode text") from None
    if has_control_characters(value):
        raise InvalidIdentity(f"{what} contains control characters")


def without_invisible(value: str) -> str:
    """Drop format characters (Cf): they change no glyph, so two IDs differing only by them are one."""
    return "".join(ch for ch in value if unicodedata.category(ch) != "Cf")


def normalise_student_id(raw: str) -> str:
    """The canonical form of a student ID (see the module docstring)."""
    if not isinstance(raw, str):
        raise InvalidIdentity("student ID must be text")
    value = unicodedata.normalize("NFC", without_invisible(raw)).strip()
    _check_text(value, "student ID")
    if not value:
        raise InvalidIdentity("student ID is empty")
    if "@" in value:
        value = unicodedata.normalize("NFC", value.casefold())
    if len(value) > MAX_STUDENT_ID_LENGTH:
        raise InvalidIdentity(f"student ID is longer than {MAX_STUDENT_ID_LENGTH} characters")
    return value


ID_SHAPES = ("email", "numeric", "uuid", "username", "other")
_UUID = re.compile(r"\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_USERNAME = re.compile(r"[^\W\d][\w.\-]*", re.UNICODE)


def id_shape(normalised: str) -> str:
    """The class of a normalised student ID: ``email``, ``numeric``, ``uuid``, ``username`` or ``other``.

    Only the class is ever stored, never the value: an e-mail address, a
    number (employee or LMS user number, leading zeros kept), a UUID (with or
    without hyphens or braces), a username (a letter first, then letters,
    digits, dots, hyphens or underscores), anything else.
    """
    if _EMAIL.fullmatch(normalised):
        return "email"
    if normalised.isdecimal() and normalised.isascii():
        return "numeric"
    if _UUID.fullmatch(normalised):
        return "uuid"
    if _USERNAME.fullmatch(normalised):
        return "username"
    return "other"


def legacy_student_id(raw: str) -> str | None:
    """The form the rule before format characters were dropped gave (NFC, trimmed, e-mails
    case-folded), or None where that rule refused it: erasure looks for rows stored under it."""
    try:
        _check_text(raw, "student ID")
    except InvalidIdentity:
        return None
    value = unicodedata.normalize("NFC", raw).strip()
    if "@" in value:
        value = unicodedata.normalize("NFC", value.casefold())
    return value or None


def normalise_name(raw: str) -> str:
    """A learner's name, cleaned and never refused (see the module docstring)."""
    if not isinstance(raw, str):
        raise InvalidIdentity("student name must be text")
    # White-space controls (tab, newline) become spaces; the other controls, format characters
    # and lone surrogates go.
    kept = "".join(ch for ch in raw if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    value = " ".join(unicodedata.normalize("NFC", kept).split())
    return value[:MAX_NAME_LENGTH].rstrip()


def normalise_course_title(raw: str) -> str:
    """A course title as the package reports it: NFC, trimmed, spaces collapsed."""
    if not isinstance(raw, str):
        raise InvalidIdentity("course title must be text")
    _check_text(raw, "course title")
    value = " ".join(unicodedata.normalize("NFC", raw).split())
    if not value:
        raise InvalidIdentity("course title is empty")
    if len(value) > MAX_COURSE_TITLE_LENGTH:
        raise InvalidIdentity(f"course title is longer than {MAX_COURSE_TITLE_LENGTH} characters")
    return value


@dataclass(frozen=True)
class PseudonymParams:
    """Argon2id cost parameters, recorded per client."""

    time_cost: int
    memory_kib: int
    parallelism: int


@dataclass(frozen=True)
class PseudonymKey:
    """What a client contributes to its pseudonyms."""

    client_uid: uuid.UUID
    salt: bytes
    params: PseudonymParams


class Pseudonymiser:
    """Makes pseudonyms for one server secret, with a bounded cache."""

    def __init__(self, secret: str, cache_size: int = 100_000):
        if not secret:
            raise ValueError("a pseudonymisation secret is required")
        self._secret = secret.encode("utf-8")
        self._argon2 = functools.lru_cache(maxsize=max(cache_size, 0))(self._argon2_uncached)

    def client_key(self, client_uid: uuid.UUID) -> bytes:
        return hmac.new(self._secret, b"client-key:" + client_uid.bytes, hashlib.sha256).digest()

    def mac(self, key: PseudonymKey, normalised: str) -> bytes:
        return hmac.new(self.client_key(key.client_uid), normalised.encode("utf-8"), hashlib.sha256).digest()

    def pseudonym(self, key: PseudonymKey | None, normalised_student_id: str) -> str:
        """The stored identity of a learner of an anonymised client.

        ``key`` is None once the client's salt was deleted (crypto-shredded).
        """
        if key is None or not key.salt:
            raise InvalidIdentity("this client's pseudonym salt was deleted; it cannot record learners")
        return self._argon2(self.mac(key, normalised_student_id), key.salt, key.params)

    def name_digest(self, key: PseudonymKey, normalised_name: str) -> str:
        """A keyed digest of a name: equal names give equal digests, nothing more.

        Keyed by the secret and the client's salt, so shredding the salt
        unlinks names as it unlinks IDs.
        """
        if not normalised_name or key is None or not key.salt:
            return ""
        name_key = hmac.new(self.client_key(key.client_uid), b"name-key:" + key.salt, hashlib.sha256).digest()
        digest = hmac.new(name_key, b"name:" + normalised_name.encode("utf-8"), hashlib.sha256).digest()
        return "n:" + base64.b32encode(digest[:10]).decode("ascii").lower()

    def cache_info(self):
        return self._argon2.cache_info()

    def cache_clear(self) -> None:
        self._argon2.cache_clear()

    @staticmethod
    def _argon2_uncached(mac: bytes, salt: bytes, params: PseudonymParams) -> str:
        raw = hash_secret_raw(
            secret=mac,
            salt=salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=20,
            type=Type.ID,
        )
        return "p:" + base64.b32encode(raw).decode("ascii").lower()


# What Pseudonymiser.name_digest makes: "n:" and 16 base32 characters.
_NAME_DIGEST = re.compile(r"^n:[a-z2-7]{16}$")


def short_reference(pseudonym: str) -> str:
    """The one short form of a pseudonym or name digest on pages ("p:abcd1234ef"): stable, and long
    enough to tell learners apart and to search for."""
    return pseudonym[:12]


def is_name_digest(value: str | None) -> bool:
    return value is not None and bool(_NAME_DIGEST.match(value))
