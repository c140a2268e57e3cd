"""Settings, read from the environment once at start-up.

In production (``APP_ENV=production``) a missing secret stops start-up with a
message that says which variable to set. In development the secrets are
generated once into ``instance/secrets.json`` so restarts keep sessions and,
above all, keep pseudonyms stable.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from environs import Env, EnvError

from app.secretbox import SecretKeyError, parse_keys


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says what to do."""


_SECRETS = ("SECRET_KEY", "PSEUDONYM_SECRET", "WEBHOOK_SECRET_KEYS")


def _new_secret(name: str) -> str:
    if name == "WEBHOOK_SECRET_KEYS":
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    return secrets.token_urlsafe(48)


class _Settings(Env):
    """environs reading a given mapping (the process environment, or a test's dict).

    One parsing rule for every variable: ``env.bool`` takes 1/0, true/false,
    yes/no, on/off (any case); an empty value counts as unset.
    """

    def __init__(self, mapping: dict):
        super().__init__(eager=True)
        self._mapping = {k: v for k, v in mapping.items() if isinstance(v, str) and v.strip()}

    def _get_value(self, env_key, default):  # environs' single lookup point
        return self._mapping.get(env_key, default)


def _int(env: _Settings, name: str, default: int) -> int:
    try:
        return env.int(name, default)
    except EnvError:
        raise ConfigError(f"{name} must be a whole number, got {env._mapping.get(name)!r}") from None


def _bool(env: _Settings, name: str, default: bool) -> bool:
    try:
        return env.bool(name, default)
    except EnvError:
        raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), "
                          f"got {env._mapping.get(name)!r}") from None


def _second_factor(env: _Settings, production: bool) -> str:
    value = (env.str("STAFF_SECOND_FACTOR", None) or ("required" if production else "optional")).strip().lower()
    if value not in ("required", "optional"):
        raise ConfigError(f"STAFF_SECOND_FACTOR must be 'required' or 'optional', got {value!r}")
    if production and value != "required":
        raise ConfigError("APP_ENV=production needs STAFF_SECOND_FACTOR=required (or unset): admin and csm "
                          "users hold other organisations' personal data")
    return value


def _storage_options(env: _Settings) -> dict:
    """A Redis that hangs must not hang requests for ever (redis-py waits without end by default): give up
    after a few seconds, generous enough for a loaded machine, and count locally until it answers."""
    uri = env.str("RATELIMIT_STORAGE_URI", None) or ""
    if uri.startswith(("redis://", "rediss://", "redis+")):
        return {"socket_timeout": 5, "socket_connect_timeout": 5}
    return {}


def _development_secrets(instance_path: Path) -> dict[str, str]:
    """Generate the secrets once and keep them in instance/ (mode 0600)."""
    path = instance_path / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [name for name in _SECRETS if not stored.get(name)]
    if missing:
        for name in missing:
            stored[name] = _new_secret(name)
        instance_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=2)
    return stored


def _origin(url: str) -> str:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def _content_url(env: dict, public_url: str, production: bool) -> str | None:
    """CONTENT_URL as an origin; in development PUBLIC_URL with localhost and 127.0.0.1 swapped."""
    raw = (env.get("CONTENT_URL") or "").strip().rstrip("/")
    if not raw:
        if production:
            return None  # remote builds are refused with a message until it is set
        parts = urlsplit(public_url)
        swap = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(parts.hostname or "")
        if swap is None:
            return None
        return _origin(public_url).replace(f"//{parts.hostname}", f"//{swap}", 1)
    parts = urlsplit(raw)
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"CONTENT_URL {raw!r} has a bad port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query or parts.username:
        raise ConfigError(f"CONTENT_URL must be an origin such as https://content.vendor.example, got {raw!r}")
    if _origin(raw) == _origin(public_url):
        raise ConfigError(f"CONTENT_URL {raw!r} is PUBLIC_URL's origin: remote content must be served from an "
                          "origin of its own (another host name), so no course can act for a signed-in user")
    return _origin(raw)


def load_config(instance_path: str | Path, env: dict | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    settings = _Settings(env)
    instance_path = Path(instance_path)
    app_env = settings.str("APP_ENV", "development").strip().lower() or "development"
    if app_env not in {"development", "production", "test"}:
        raise ConfigError("APP_ENV must be 'development', 'production' or 'test'")
    production = app_env == "production"

    secret_values = {name: settings.str(name, "").strip() for name in _SECRETS}
    missing = [name for name, value in secret_values.items() if not value]
    if missing and production:
        raise ConfigError(
            "APP_ENV=production needs "
            + " and ".join(missing)
            + " set in the environment (generate SECRET_KEY and PSEUDONYM_SECRET with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'; WEBHOOK_SECRET_KEYS with: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'). "
            "Keep PSEUDONYM_SECRET safe and never change it: every pseudonym depends on it."
        )
    if missing:
        generated = _development_secrets(instance_path)
        for name in missing:
            secret_values[name] = generated[name]

    try:
        webhook_keys = parse_keys(secret_values["WEBHOOK_SECRET_KEYS"])
    except SecretKeyError as exc:
        raise ConfigError(str(exc)) from None

    database_url = settings.str("DATABASE_URL", "").strip()
    if not database_url:
        database_url = f"sqlite:///{instance_path / 'tracker.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://"):]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]

    engine_options: dict = {"hide_parameters": True, "pool_pre_ping": True}
    if database_url.startswith("sqlite"):
        engine_options["connect_args"] = {"timeout": 15}
    else:
        engine_options["pool_size"] = _int(settings, "DB_POOL_SIZE", 10)
        engine_options["connect_args"] = {"connect_timeout": 5}

    port = settings.str("PORT", None) or 8443
    public_url = (settings.str("PUBLIC_URL", None) or f"https://127.0.0.1:{port}").rstrip("/")
    return {
        "APP_ENV": app_env,
        "TESTING": app_env == "test",
        "SECRET_KEY": secret_values["SECRET_KEY"],
        "PSEUDONYM_SECRET": secret_values["PSEUDONYM_SECRET"],
        # Fernet keys for webhook signing secrets at rest: the first encrypts, all decrypt.
        "WEBHOOK_SECRET_KEYS": webhook_keys,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "PUBLIC_URL": public_url,
        # Remote package content: its own origin (never PUBLIC_URL's) and the store's folder.
        "CONTENT_URL": _content_url(env, public_url, production),
        "CONTENT_DIR": settings.str("CONTENT_DIR", None) or str(instance_path / "content"),
        # Argon2id parameters for new clients; each client keeps its own copy.
        "PSEUDONYM_TIME_COST": _int(settings, "PSEUDONYM_TIME_COST", 2),
        "PSEUDONYM_MEMORY_KIB": _int(settings, "PSEUDONYM_MEMORY_KIB", 19456),
        "PSEUDONYM_PARALLELISM": _int(settings, "PSEUDONYM_PARALLELISM", 1),
        "PSEUDONYM_CACHE_SIZE": _int(settings, "PSEUDONYM_CACHE_SIZE", 100_000),
        # Beacons are tiny; uploads of course content are not.
        "BEACON_MAX_BYTES": _int(settings, "BEACON_MAX_BYTES", 4096),
        "MAX_CONTENT_LENGTH": _int(settings, "MAX_UPLOAD_MB", 200) * 1024 * 1024,
        "BEACON_RATE_LIMIT": settings.str("BEACON_RATE_LIMIT", "600/minute"),
        "LOGIN_RATE_LIMIT": settings.str("LOGIN_RATE_LIMIT", "10/minute"),
        # Failed sign-ins per e-mail address, known or not (the lockout covers known accounts).
        "LOGIN_ACCOUNT_RATE_LIMIT": settings.str("LOGIN_ACCOUNT_RATE_LIMIT", "10/minute"),
        # Sign-ins at one account from any address: many addresses guessing one account are held
        # to this (stepped windows: each one passed makes the wait longer). A browser that signed in
        # to that account before (its known-device cookie) is exempt, so outsiders cannot lock the owner out.
        "LOGIN_ACCOUNT_ANY_ADDRESS_RATE_LIMIT": settings.str("LOGIN_ACCOUNT_ANY_ADDRESS_RATE_LIMIT",
                                                             "10/minute;30/hour;100/day"),
        # Codes and passkey tries at the second step, per account.
        "LOGIN_SECOND_FACTOR_RATE_LIMIT": settings.str("LOGIN_SECOND_FACTOR_RATE_LIMIT", "5/minute;20/hour"),
        "KNOWN_DEVICE_DAYS": _int(settings, "KNOWN_DEVICE_DAYS", 90),
        # admin and csm sign in with a second factor when "required" (always in production);
        # "optional" offers it to everyone and asks only those who enrolled one.
        "STAFF_SECOND_FACTOR": _second_factor(settings, production),
        # WebAuthn's relying party: PUBLIC_URL's host name unless set (an IP address cannot be one).
        "WEBAUTHN_RP_ID": settings.str("WEBAUTHN_RP_ID", None) or (urlsplit(public_url).hostname or ""),
        "WEBAUTHN_RP_NAME": settings.str("WEBAUTHN_RP_NAME", "SCORM usage tracker"),
        # Shared by every worker of this machine (app/ratelimits.py); redis://... shares between machines.
        # In-process tests build one app per test, so memory:// is shared there too.
        "RATELIMIT_STORAGE_URI": settings.str("RATELIMIT_STORAGE_URI", None)
        or ("memory://" if app_env == "test" else f"machine://{(instance_path / 'ratelimits.db').resolve()}"),
        # Several deployments sharing one Redis keep their counters apart with a prefix each.
        "RATELIMIT_KEY_PREFIX": settings.str("RATELIMIT_KEY_PREFIX", ""),
        # A rate-limit store that is down never gives a 500: each worker counts on its own in memory
        # (the same limits, per process) until the store answers again, and says so in its log and
        # on /healthz (app/ratelimits.py).
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_STORAGE_OPTIONS": _storage_options(settings),
        "RATELIMIT_ENABLED": _bool(settings, "RATELIMIT_ENABLED", True),
        "RATELIMIT_HEADERS_ENABLED": True,
        "CLIENT_CACHE_SECONDS": _int(settings, "CLIENT_CACHE_SECONDS", 10),
        "RETRY_AFTER_SECONDS": _int(settings, "RETRY_AFTER_SECONDS", 5),
        "TRUSTED_PROXIES": _int(settings, "TRUSTED_PROXIES", 0),
        "SESSION_COOKIE_SECURE": _bool(settings, "SESSION_COOKIE_SECURE", True),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": _int(settings, "SESSION_HOURS", 12) * 3600,
        # Server-side: a login session ends SESSION_HOURS after sign-in whatever happens, and after
        # SESSION_IDLE_MINUTES without a request.
        "SESSION_IDLE_MINUTES": _int(settings, "SESSION_IDLE_MINUTES", 30),
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": True,
        # Licence alerts and webhooks (issue 12): the outbox worker sends them.
        "SMTP_URL": settings.str("SMTP_URL", None),
        "MAIL_FROM": settings.str("MAIL_FROM", None) or "tracker@localhost",
        "WEBHOOK_CA_FILE": settings.str("WEBHOOK_CA_FILE", None),
        "OUTBOX_LEASE_SECONDS": _int(settings, "OUTBOX_LEASE_SECONDS", 60),
    }
