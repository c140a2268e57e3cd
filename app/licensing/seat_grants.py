"""Seat grants: what a remote package's launcher obtains from the seat check, for a client whose
licence blocks new learners, and what the content origin and the beacon path then ask for.

A grant is a signed token (itsdangerous, keyed by ``SECRET_KEY``) naming the package, the
course version current when it was issued, and the learner: a keyed digest of the normalised
student ID with a nonce of the grant's own, so that the grants of one learner cannot be linked
to each other in an access log, and no plain ID travels in an address. Its signature carries
the time it was issued. It is accepted:

- for the launch address and the player page, for ``START_SECONDS`` (the launcher frames them
  at once);
- for the course's other files, for ``SESSION_SECONDS`` (a course loads its slides, media
  and pages as the learner goes);
- in a beacon, for ``BEACON_SECONDS`` (a beacon the server could not take waits in the
  browser until the next launch), and only for the learner it names.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

START_SECONDS = 5 * 60
SESSION_SECONDS = 12 * 3600
BEACON_SECONDS = 7 * 86400
MAX_LENGTH = 400  # a grant is ~200 characters; anything longer is not one of ours

_SALT = "seat-grant.v1"


@dataclass(frozen=True)
class SeatGrant:
    package_id: str
    version: str
    nonce: str
    learner: str
    issued_at: dt.datetime


class SeatGrants:
    """Issues and reads grants with the app's secret (one per app: ``app.extensions["seat_grants"]``)."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._serializer = URLSafeTimedSerializer(raw, salt=_SALT)
        self._learner_key = hmac.new(raw, b"seat-grant learner digest v1", hashlib.sha256).digest()

    def _learner(self, package_id: str, nonce: str, student_id: str) -> str:
        message = f"{package_id}\n{nonce}\n{student_id}".encode()
        digest = hmac.new(self._learner_key, message, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self, package_id, version: str, student_id: str) -> str:
        """A grant for this learner (normalised student ID) to open this version of the package."""
        package = str(package_id)
        nonce = secrets.token_urlsafe(8)
        return self._serializer.dumps([package, version, nonce, self._learner(package, nonce, student_id)])

    def read(self, token: str | None, *, package_id, max_age: int) -> SeatGrant | None:
        """The grant if ``token`` is one of ours, for this package, and no older than ``max_age`` seconds."""
        if not isinstance(token, str) or not token or len(token) > MAX_LENGTH:
            return None
        try:
            payload, issued_at = self._serializer.loads(token, max_age=max_age, return_timestamp=True)
        except (SignatureExpired, BadSignature):
            return None
        if (not isinstance(payload, list) or len(payload) != 4 or not all(isinstance(p, str) for p in payload)
                or payload[0] != str(package_id)):
            return None
        return SeatGrant(payload[0], payload[1], payload[2], payload[3], issued_at)

    def for_learner(self, token: str | None, *, package_id, student_id: str) -> bool:
        """Does ``token`` grant this learner a seat in this package (a beacon's check)?"""
        grant = self.read(token, package_id=package_id, max_age=BEACON_SECONDS)
        return grant is not None and hmac.compare_digest(
            grant.learner, self._learner(grant.package_id, grant.nonce, student_id))
