"""Secrets the server must read back (webhook signing secrets), encrypted at rest.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under the keys of
``WEBHOOK_SECRET_KEYS``: the first key encrypts, every key listed decrypts
(``MultiFernet``), so a key is rotated by putting a new one first, running
``flask --app wsgi webhook reencrypt``, then dropping the old one. The database
alone (a dump, a backup, a read-only SQL injection) never gives a signing secret.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator


class SecretKeyError(ValueError):
    """WEBHOOK_SECRET_KEYS is malformed; the message says how to make a key."""


def parse_keys(raw: str) -> list[str]:
    """The comma-separated Fernet keys of WEBHOOK_SECRET_KEYS, each checked."""
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SecretKeyError("WEBHOOK_SECRET_KEYS must be Fernet keys separated by commas (make one with: "
                                 "python -c 'from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())')") from None
    return keys


def keyring(keys: list[str]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _app_keyring() -> MultiFernet:
    ring = current_app.extensions.get("secretbox")
    if ring is None:
        ring = current_app.extensions["secretbox"] = keyring(current_app.config["WEBHOOK_SECRET_KEYS"])
    return ring


class EncryptedString(TypeDecorator):
    """A string column stored as a Fernet token; Python sees the plain value."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return _app_keyring().encrypt(value.encode()).decode()

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        try:
            return _app_keyring().decrypt(value.encode()).decode()
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted with WEBHOOK_SECRET_KEYS: was a key "
                                 "dropped before `flask --app wsgi webhook reencrypt` ran?") from None
