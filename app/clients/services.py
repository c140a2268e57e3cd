"""Clients: creation, beacon keys, and the in-process directory the beacon path reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from app import audit
from app.identity.placeholders import DEFAULT_PLACEHOLDER_IDS, clean_placeholder_ids, policy_entries
from app.identity.student_ids import InvalidIdentity, Pseudonymiser, PseudonymKey, PseudonymParams
from app.models import LICENCES, Client, ClientKey, Event, Learner, PackageIssue, StaffUser, utcnow

KEY_PREFIX = "ck_"


class ClientError(ValueError):
    """Bad input for a client operation; the message is safe to show."""


class CsmError(ClientError):
    """The staff user named cannot be the client's CSM."""


def hash_secret_token(token: str) -> str:
    """Keys and API tokens are random and long: a plain SHA-256 is the right lookup hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_beacon_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:48] or "client"


LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def normalise_origin(raw: str, *, local_http: bool = False) -> str:
    """An allowed LMS origin as browsers send it: ``https://host[:port]``, nothing else.

    No path, query, user, wildcard or other scheme; the host lower-cased, the
    default port dropped. ``http://`` only for localhost and only when
    ``local_http`` (development). The one origin rule for the form, the CLI
    and the service.
    """
    value = (raw or "").strip()
    parts = urlsplit(value)
    if "*" in value:
        raise ClientError(f"origin {raw!r}: wildcards are not allowed; list each LMS host")
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ClientError(f"origin {raw!r} must look like https://lms.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password \
            or value.endswith(("?", "#")):
        raise ClientError(f"origin {raw!r} must be https://host[:port] only, with no path")
    try:
        port = parts.port
    except ValueError:
        raise ClientError(f"origin {raw!r} has a bad port") from None
    if port == 0:
        raise ClientError(f"origin {raw!r} has a bad port")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.scheme == "http" and not (local_http and host in LOCAL_HOSTS):
        raise ClientError(f"origin {raw!r} must use https:// (http:// only for localhost in development)")
    default_port = {"https": 443, "http": 80}[parts.scheme]
    if port and port != default_port:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def _unique_slug(session: Session, base: str) -> str:
    slug, n = base, 2
    while session.scalar(select(Client.id).where(Client.slug == slug)) is not None:
        slug = f"{base}-{n}"
        n += 1
    return slug


def client_settings(client: Client) -> dict:
    """The audited view of a client's configuration."""
    return {
        "name": client.name,
        "slug": client.slug,
        "active": client.active,
        "anonymised": client.anonymised,
        "sealed": client.sealed,
        "licence": client.licence,
        "allowed_origins": list(client.allowed_origins or []),
        "placeholder_ids": list(policy_entries(client.placeholder_ids)),
        "csm": client.csm.email if client.csm is not None else None,
    }


# The roles a client's CSM may have (the staff users who act on its alerts).
CSM_ROLES = ("admin", "csm")
# update_client's ``csm`` when the caller does not change it.
KEEP = object()


def csm_candidates(session: Session) -> list[StaffUser]:
    """Who may be a client's CSM: active staff users of role csm or admin, CSMs first."""
    return list(session.scalars(select(StaffUser).where(StaffUser.active.is_(True), StaffUser.role.in_(CSM_ROLES))
                                .order_by(StaffUser.role.desc(), StaffUser.email)))


def find_csm(session: Session, email: str | None) -> StaffUser | None:
    """The staff user named to be a client's CSM (None for an empty name); ClientError if they cannot be."""
    email = (email or "").strip().casefold()
    if not email:
        return None
    user = session.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email))
    if user is None:
        raise CsmError(f"there is no staff user {email}")
    _check_csm(user)
    return user


def _check_csm(user: StaffUser | None) -> None:
    if user is None:
        return
    if user.role not in CSM_ROLES:
        raise CsmError(f"{user.email} is a {user.role} user; a client's CSM is a csm or admin user")
    if not user.active:
        raise CsmError(f"{user.email} is deactivated")


def _checked_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ClientError("a client needs a name")
    if len(name) > 200:
        raise ClientError("client name is longer than 200 characters")
    return name


class DuplicateName(ClientError):
    """Another client has this name; the caller may confirm and go ahead (the slugs tell them apart)."""

    def __init__(self, name: str, slugs: list[str]):
        super().__init__(f"a client named {name!r} exists already ({', '.join(slugs)}); "
                         "confirm to use the name again")
        self.slugs = slugs


def _check_name_free(session: Session, name: str, client: Client | None) -> None:
    query = select(Client.slug).where(func.lower(Client.name) == name.lower())
    if client is not None:
        query = query.where(Client.id != client.id)
    slugs = list(session.scalars(query.order_by(Client.slug)))
    if slugs:
        raise DuplicateName(name, slugs)


def _check_licence(licence: str) -> None:
    if licence not in LICENCES:
        raise ClientError(f"licence must be one of {', '.join(LICENCES)}")


def update_client(session: Session, client: Client, *, actor: str, name: str, active: bool, licence: str,
                  origins: list[str] | tuple, local_http: bool = False, confirm_duplicate: bool = False,
                  placeholder_ids: list[str] | None = None, csm=KEEP, commit: bool = True) -> Client:
    """Change a client's settings (not its mode: see anonymisation.switch_mode). Audited; commits.

    The licence period and seat limit are not settings: they are licence terms (``licensing.licences``).

    ``placeholder_ids``: the new placeholder list (None leaves it as it is); a
    list equal to the defaults is stored as "the defaults", so it follows them.
    ``csm``: the client's CSM (a StaffUser of role csm or admin, or None for none; KEEP leaves it).
    ``commit=False`` leaves the transaction open (the client form saves the term in force with it).

    The caller clears the process's client directory so beacons see the change at once.
    """
    name = _checked_name(name)
    _check_licence(licence)
    normalised_origins = sorted({normalise_origin(o, local_http=local_http) for o in origins if o.strip()})
    if placeholder_ids is not None:
        try:
            placeholder_ids = clean_placeholder_ids(placeholder_ids)
        except InvalidIdentity as exc:
            raise ClientError(str(exc)) from None
    if csm is not KEEP:
        _check_csm(csm)
    if not confirm_duplicate:
        _check_name_free(session, name, client)
    before = client_settings(client)
    client.name, client.active, client.licence = name, active, licence
    if csm is not KEEP:
        client.csm = csm
    client.allowed_origins = normalised_origins
    if placeholder_ids is not None:
        client.placeholder_ids = (None if sorted(placeholder_ids) == sorted(DEFAULT_PLACEHOLDER_IDS)
                                  else placeholder_ids)
    after = client_settings(client)
    if after != before:
        changed = sorted(k for k in after if after[k] != before[k])
        audit.record(session, actor, "client.update", client.id,
                     {k: before[k] for k in changed}, {k: after[k] for k in changed})
    if commit:
        session.commit()
    return client


def create_client(session: Session, *, name: str, actor: str, anonymised: bool = False, sealed: bool = False,
                  licence: str = "subscription", origins: list[str] | tuple = (), slug: str | None = None,
                  params: PseudonymParams, active: bool = True, local_http: bool = False,
                  confirm_duplicate: bool = False, csm: StaffUser | None = None,
                  commit: bool = True) -> tuple[Client, str]:
    """Create a client and its first beacon key. Returns (client, plain key); commits unless told not to.

    A name another client has already raises DuplicateName unless ``confirm_duplicate``.
    ``sealed`` (its packages sealed with its own key) makes it anonymised too.
    ``csm``: its customer success manager (a csm or admin user), who gets its alerts.
    A client with a first licence term is made by ``licence_terms.create_client_with_term``.
    """
    name = _checked_name(name)
    _check_csm(csm)
    anonymised = anonymised or sealed
    _check_licence(licence)
    normalised_origins = sorted({normalise_origin(o, local_http=local_http) for o in origins})
    if not confirm_duplicate:
        _check_name_free(session, name, None)
    if slug:
        slug = slugify(slug)
        if session.scalar(select(Client.id).where(Client.slug == slug)) is not None:
            raise ClientError(f"slug {slug!r} is taken")
    else:
        slug = _unique_slug(session, slugify(name))
    client = Client(
        uid=uuid.uuid4(), slug=slug, name=name, active=active, anonymised=anonymised, sealed=sealed,
        salt=secrets.token_bytes(16), licence=licence,
        allowed_origins=normalised_origins,
        pseudonym_time_cost=params.time_cost, pseudonym_memory_kib=params.memory_kib,
        pseudonym_parallelism=params.parallelism, csm=csm,
    )
    key = new_beacon_key()
    client.keys.append(ClientKey(key_hash=hash_secret_token(key), key_prefix=key[:8]))
    session.add(client)
    session.flush()
    audit.record(session, actor, "client.create", client.id, None, client_settings(client))
    if commit:
        session.commit()
    return client, key


def set_sealed(session: Session, client: Client, *, sealed: bool, actor: str) -> Client:
    """Turn sealed packages on or off. Audited; commits; the caller clears the client directory.

    Only an anonymised client can be sealed. From then on its plain IDs are refused (400), so its
    packages must be rebuilt and sealed; turning it off refuses sealed IDs, so the same holds back.
    """
    if client.sealed == sealed:
        raise ClientError("the client's packages are sealed already" if sealed else
                          "the client's packages are not sealed")
    if sealed and not client.anonymised:
        raise ClientError("only an anonymised client can seal its packages: switch it to anonymised first")
    client.sealed = sealed
    audit.record(session, actor, "client.sealed", client.id, {"sealed": not sealed}, {"sealed": sealed})
    session.commit()
    return client


def rotate_key(session: Session, client: Client, *, actor: str, grace: dt.timedelta) -> str:
    """Issue a new key; keys in use now stay valid for ``grace`` (0 ends them at once). Commits."""
    if grace < dt.timedelta(0):
        raise ClientError("the grace period cannot be negative")
    now = utcnow()
    ends = now + grace
    for old in client.keys:
        if old.expires_at is None or old.expires_at > ends:
            old.expires_at = ends
    key = new_beacon_key()
    client.keys.append(ClientKey(key_hash=hash_secret_token(key), key_prefix=key[:8]))
    audit.record(session, actor, "client.rotate_key", client.id,
                 {"keys_valid_until": ends.isoformat()}, {"new_key_prefix": key[:8]})
    session.commit()
    return key


def add_key(client: Client, issue: PackageIssue | None = None) -> str:
    """A new beacon key for ``client`` in the caller's transaction (the caller commits and audits).

    Keys are stored hashed, so whoever needs the plain key (a package being
    built) must get a new one; older keys stay valid. The key is tied to the
    package issue that will carry it: ``issue``, or else the one issue of this
    client pending in the same session (the package builder adds it just before).
    """
    if issue is None:
        session = object_session(client)
        pending = [o for o in (session.new if session else ()) if isinstance(o, PackageIssue)
                   and o.client_id == client.id]
        issue = pending[0] if len(pending) == 1 else None
    key = new_beacon_key()
    client.keys.append(ClientKey(key_hash=hash_secret_token(key), key_prefix=key[:8], package_issue=issue))
    return key


def revoke_package_key(session: Session, client: Client, issue: PackageIssue, *, actor: str) -> list[str]:
    """End the key(s) a package carries, now; other packages' keys keep working. Audited; commits.

    Returns the prefixes revoked. The caller clears the process's client directory.
    """
    if issue.client_id != client.id:
        raise ClientError("that package belongs to another client")
    now = utcnow()
    revoked = []
    for key in session.scalars(select(ClientKey).where(ClientKey.package_issue_id == issue.id,
                                                       ClientKey.revoked_at.is_(None))):
        key.revoked_at, key.revoked_by = now, actor
        key.expires_at = now if key.expires_at is None or key.expires_at > now else key.expires_at
        revoked.append(key.key_prefix)
    if not revoked:
        raise ClientError("this package carries no key that is still valid")
    audit.record(session, actor, "package.revoke_key", client.id,
                 {"package_id": str(issue.package_id), "course": issue.course_title, "key_prefixes": revoked},
                 {"revoked_at": now.isoformat()})
    session.commit()
    return revoked


def package_issue(session: Session, client: Client, package_id) -> PackageIssue | None:
    return session.scalar(select(PackageIssue).where(PackageIssue.client_id == client.id,
                                                     PackageIssue.package_id == package_id))


def shred_pseudonyms(session: Session, client: Client, *, actor: str) -> None:
    """Crypto-shredding: delete the client's salt, so its pseudonyms can never be linked again. Commits.

    Counts over the stored rows stay as they were; nobody returning can be
    recognised, so the client is deactivated and records no more learners.
    """
    if client.salt is None:
        raise ClientError("this client's pseudonym salt was deleted already")
    before = client_settings(client)
    client.salt = None
    client.active = False
    audit.record(session, actor, "client.shred_pseudonyms", client.id, before,
                 {**client_settings(client), "salt": "deleted"})
    session.commit()


# --- the directory the beacon path reads --------------------------------------


@dataclass(frozen=True)
class ClientSnapshot:
    """What the beacon path needs to know about a client, cached for a few seconds."""

    id: int
    slug: str
    active: bool
    tracked: bool
    anonymised: bool
    allowed_origins: frozenset[str]
    pseudonym_key: PseudonymKey | None
    # Verbatim client that was anonymised before: link returning learners.
    links_pseudonyms: bool
    key_expires_at: dt.datetime | None = None
    sealed: bool = False  # takes only sealed IDs (see identity.check_sealing)
    # The key is a remote package's (served with its content): that package's ID. Such a key's
    # beacons need a seat grant to take a new learner's seat while the licence blocks new learners.
    remote_package: str | None = None
    # Case-folded placeholder student IDs: beacons with one are held back (ingest.held_back).
    placeholder_ids: frozenset[str] = frozenset()

    def origin_allowed(self, origin: str | None) -> bool:
        if not self.allowed_origins:
            return True
        return origin is not None and origin in self.allowed_origins


def snapshot(session: Session, client: Client, key_expires_at: dt.datetime | None = None,
             remote_package: str | None = None) -> ClientSnapshot:
    pseudonym_key = None
    if client.salt:
        pseudonym_key = PseudonymKey(
            client_uid=client.uid, salt=client.salt,
            params=PseudonymParams(client.pseudonym_time_cost, client.pseudonym_memory_kib,
                                   client.pseudonym_parallelism),
        )
    links = False
    if not client.anonymised and pseudonym_key is not None:
        links = session.scalar(
            select(Learner.id).where(Learner.client_id == client.id, Learner.pseudonymised.is_(True)).limit(1)
        ) is not None
    return ClientSnapshot(
        id=client.id, slug=client.slug, active=client.active, tracked=client.tracked,
        anonymised=client.anonymised, allowed_origins=frozenset(client.allowed_origins or ()),
        pseudonym_key=pseudonym_key, links_pseudonyms=links, key_expires_at=key_expires_at,
        sealed=client.sealed,
        remote_package=remote_package,
        placeholder_ids=frozenset(policy_entries(client.placeholder_ids)),
    )


def stored_identity(pseudonymiser: Pseudonymiser, client: ClientSnapshot, student_id: str) -> str:
    """How a (normalised) student ID is stored for this client: itself, or its pseudonym."""
    return pseudonymiser.pseudonym(client.pseudonym_key, student_id) if client.anonymised else student_id


@dataclass
class ClientDirectory:
    """Beacon key -> client snapshot, cached per process for ``ttl`` seconds.

    Changes made in the admin reach every process within ``ttl``; the process
    that made a change clears its own cache at once.
    """

    ttl: float = 10.0
    _by_key: dict = field(default_factory=dict)
    _courses: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client_for_key(self, session: Session, key: str) -> ClientSnapshot | None:
        key_hash = hash_secret_token(key)
        now_mono = time.monotonic()
        cached = self._by_key.get(key_hash)
        if cached and cached[0] > now_mono:
            found = cached[1]
        else:
            found = self._load(session, key_hash)
            with self._lock:
                if len(self._by_key) > 10_000:
                    self._by_key.clear()
                self._by_key[key_hash] = (now_mono + self.ttl, found)
        if found is None:
            return None
        if found.key_expires_at is not None and found.key_expires_at <= utcnow():
            return None
        return found

    def _load(self, session: Session, key_hash: str) -> ClientSnapshot | None:
        row = session.execute(
            select(ClientKey, Client, PackageIssue.package_id).join(Client, ClientKey.client_id == Client.id)
            .outerjoin(PackageIssue, (PackageIssue.id == ClientKey.package_issue_id) & (PackageIssue.mode == "remote"))
            .where(ClientKey.key_hash == key_hash)
        ).first()
        if row is None:
            return None
        client_key, client, remote_package = row
        return snapshot(session, client, client_key.expires_at,
                        str(remote_package) if remote_package is not None else None)

    def remembered(self, name: tuple, load):
        """A small fact the beacon path asks often (``load()``), cached like the clients, for ``ttl``."""
        now_mono = time.monotonic()
        cached = self._by_key.get(name)
        if cached and cached[0] > now_mono:
            return cached[1]
        value = load()
        with self._lock:
            if len(self._by_key) > 10_000:
                self._by_key.clear()
            self._by_key[name] = (now_mono + self.ttl, value)
        return value

    def course_id(self, client_id: int, title: str) -> int | None:
        return self._courses.get((client_id, title))

    def remember_course(self, client_id: int, title: str, course_id: int) -> None:
        """Kept for good (a course's ID never changes), unless ``ttl`` is 0: then nothing is cached,
        as a server whose database is reset under it (the tests' shared live server) needs."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._courses) > 50_000:
                self._courses.clear()
            self._courses[(client_id, title)] = course_id

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()
            self._courses.clear()

    def forget_client(self, client_id: int) -> None:
        """Drop a client's cached snapshots (the beacon path found one stale)."""
        with self._lock:
            for key_hash, (_, found) in list(self._by_key.items()):
                if isinstance(found, ClientSnapshot) and found.id == client_id:
                    del self._by_key[key_hash]

    def allowed_any_origin(self, session: Session, origin: str) -> bool:
        """For CORS preflight, which carries no key: is the origin allowed for any client?"""
        cached = self._by_key.get(("preflight", origin))
        now_mono = time.monotonic()
        if cached and cached[0] > now_mono:
            return cached[1]
        allowed = False
        for origins in session.scalars(
            select(Client.allowed_origins).where(Client.active.is_(True), Client.licence != "perpetual")
        ):
            if not origins or origin in origins:
                allowed = True
                break
        with self._lock:
            if len(self._by_key) > 10_000:
                self._by_key.clear()
            self._by_key[("preflight", origin)] = (now_mono + self.ttl, allowed)
        return allowed


# --- what the admin reads ------------------------------------------------------


def find_any_client(session: Session) -> bool:
    return session.scalar(select(Client.id).limit(1)) is not None


def find_client(session: Session, slug: str) -> Client | None:
    return session.scalar(select(Client).where(Client.slug == slug))


CLIENT_FILTERS = ("all", "active", "inactive", "anonymised", "verbatim", "subscription", "perpetual")


def all_clients(session: Session, *, search: str = "", show: str = "all") -> list[Client]:
    """Clients by name (then slug); ``search`` matches name or slug, ``show`` one of CLIENT_FILTERS."""
    query = select(Client).order_by(Client.name, Client.slug)
    term = (search or "").strip().lower()
    if term:
        query = query.where(func.lower(Client.name).contains(term, autoescape=True)
                            | Client.slug.contains(term, autoescape=True))
    conditions = {"active": Client.active.is_(True), "inactive": Client.active.is_(False),
                  "anonymised": Client.anonymised.is_(True), "verbatim": Client.anonymised.is_(False),
                  "subscription": Client.licence == "subscription", "perpetual": Client.licence == "perpetual"}
    if show in conditions:
        query = query.where(conditions[show])
    return list(session.scalars(query))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # max() over a column skips the type's result processing on some databases.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def last_beacons(session: Session) -> dict[int, dt.datetime]:
    """Each client's latest beacon, in one query."""
    rows = session.execute(select(Event.client_id, func.max(Event.received_at)).group_by(Event.client_id)).all()
    return {client_id: _aware(at) for client_id, at in rows}


def last_beacon_at(session: Session, client: Client) -> dt.datetime | None:
    return _aware(session.scalar(select(func.max(Event.received_at)).where(Event.client_id == client.id)))


def client_keys(session: Session, client: Client) -> list[ClientKey]:
    return list(session.scalars(select(ClientKey).where(ClientKey.client_id == client.id)
                                .order_by(ClientKey.created_at.desc())))


def package_issues(session: Session, client: Client) -> list[PackageIssue]:
    return list(session.scalars(select(PackageIssue).where(PackageIssue.client_id == client.id)
                                .order_by(PackageIssue.created_at.desc())))
