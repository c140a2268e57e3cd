"""Placeholder student IDs: what a misconfigured LMS sends instead of a learner's ID.

Such an ID is the same for every learner of the LMS, so counting it would bill
all of them as one "user". A beacon whose normalised student ID is on its
client's placeholder list is acknowledged and kept, but held back from every
count until a CSM releases it (``ingest.held_back``).

Matching is exact on the normalised ID (``identity.normalise_student_id``:
trimmed, NFC), compared case-insensitively (case-folded): ``  NULL `` is held
back, ``1024`` or ``a0`` never (a real ID that merely contains ``0``).

The defaults, and why each is there:

- ``undefined``, ``null``, ``[object object]``, ``nan``: a JavaScript value
  turned into text (a missing field, a null, an object, a failed number) by the
  LMS or a wrapper between it and the course;
- ``none``, ``nil``, ``(null)``: the same slip in Python, Ruby and C (printf);
- ``0``, ``-1``: an unset integer user ID, or "not found";
- ``guest``, ``anonymous``: a guest account or guest access (Moodle's guest
  user is ``guest``; course wrappers fall back to ``anonymous`` when the LMS
  gives no ID), shared by everyone who uses it;
- ``{{student_id}}``, ``{{learner_id}}``, ``{{user_id}}``, ``${student_id}``,
  ``$student_id``, ``%student_id%``, ``[student_id]``, ``__student_id__``: a
  launch template or field mapping that was never filled in, so the token
  itself arrives for every learner.

``student``, ``test`` and ``user`` are left out: they are real user names in
some LMSs (a shared test account is better seen, and a CSM can add them).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from app.identity.student_ids import InvalidIdentity, normalise_student_id

DEFAULT_PLACEHOLDER_IDS: tuple[str, ...] = (
    "undefined", "null", "none", "nan", "nil", "(null)", "[object object]", "0", "-1", "guest", "anonymous",
    "{{student_id}}", "{{learner_id}}", "{{user_id}}", "${student_id}", "$student_id", "%student_id%",
    "[student_id]", "__student_id__",
)
MAX_PLACEHOLDER_IDS = 100


def placeholder_key(normalised_student_id: str) -> str:
    """The form a normalised student ID is compared in: case-folded (NFC again when not ASCII)."""
    folded = normalised_student_id.casefold()
    return folded if folded.isascii() else unicodedata.normalize("NFC", folded)


def clean_placeholder_ids(entries: Iterable[str]) -> list[str]:
    """A list a CSM typed, as it is stored: each entry normalised like an ID and case-folded,
    blank lines dropped, duplicates once, in the order given. Raises ``InvalidIdentity``."""
    cleaned: list[str] = []
    for raw in entries:
        if not raw or not raw.strip():
            continue
        try:
            key = placeholder_key(normalise_student_id(raw))
        except InvalidIdentity as exc:
            raise InvalidIdentity(f"placeholder {raw.strip()[:40]!r}: {exc}") from None
        if key not in cleaned:
            cleaned.append(key)
    if len(cleaned) > MAX_PLACEHOLDER_IDS:
        raise InvalidIdentity(f"at most {MAX_PLACEHOLDER_IDS} placeholder IDs per client")
    return cleaned


def policy_entries(stored: list[str] | None) -> tuple[str, ...]:
    """A client's placeholder list: its own, or the defaults when it never set one (NULL)."""
    return DEFAULT_PLACEHOLDER_IDS if stored is None else tuple(stored)


def matched_placeholder(policy: frozenset[str], normalised_student_id: str) -> str | None:
    """The policy entry this ID is, or None (the beacon path's check: one set lookup)."""
    if not policy:
        return None
    key = placeholder_key(normalised_student_id)
    return key if key in policy else None
