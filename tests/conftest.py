"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when
TEST_DATABASE_URL names one), the app, an HTTPS test client, factories for
clients and staff, and a real gunicorn over HTTPS for end-to-end tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app_builds import share_compilation, share_url_builders  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.identity.student_ids import PseudonymParams  # noqa: E402
from app.licensing import terms as licence_terms  # noqa: E402
from app.staff import services as staff_service  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
share_url_builders()  # each test builds an app: its URL builders and templates are compiled once (tests/app_builds.py)
TEST_PASSWORD = "correct horse battery staple"
# Cheap Argon2 for tests; production parameters are covered by the benchmark.
TEST_PARAMS = PseudonymParams(time_cost=1, memory_kib=256, parallelism=1)
TEST_SECRETS = {
    "SECRET_KEY": "test-secret-key-0123456789",
    "PSEUDONYM_SECRET": "test-pseudonym-secret-0123456789",
    "WEBHOOK_SECRET_KEYS": "dGVzdC13ZWJob29rLWtleS0wMTIzNDU2Nzg5YWJjZGU=",
}


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; under CI that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def scratch_database_name(kind: str) -> str:
    """A PostgreSQL database of this run's: `make test` (tests/run_suite.py) drops and reports any
    database carrying its TEST_RUN_TAG that a test left behind."""
    return f"tracker_{kind}_{os.environ.get('TEST_RUN_TAG', 'adhoc')}_{uuid.uuid4().hex[:10]}"


def _postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        return None
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(_config(url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


def _config(url: str, **extra) -> dict:
    return {
        "ENV": {"APP_ENV": "test", "DATABASE_URL": url, **TEST_SECRETS},
        "PSEUDONYM_TIME_COST": TEST_PARAMS.time_cost,
        "PSEUDONYM_MEMORY_KIB": TEST_PARAMS.memory_kib,
        "PSEUDONYM_PARALLELISM": TEST_PARAMS.parallelism,
        "BEACON_RATE_LIMIT": "100000/minute",
        "LOGIN_RATE_LIMIT": "1000/minute",
        **extra,
    }


ONE_DATABASE_REASON = "runs in the SQLite pass only: what it tests does not depend on the database's kind"
# Browser runs in Chromium (the real courses, the tracker's protocol, the xAPI side): when `make test` runs
# both passes side by side, these files' one_database tests run in the PostgreSQL pass instead, so the two
# passes end together rather than the SQLite pass running on alone with cores to spare. Still once per run.
ONE_DATABASE_IN_POSTGRESQL_PASS = ("test_real_courses.py", "test_false_records.py", "test_tracker_protocol.py",
                                   "test_xapi_browser.py")
MOVED_REASON = "runs in the PostgreSQL pass: what it tests does not depend on the database's kind"
BOTH_PASSES = "TEST_BOTH_PASSES"  # set by tests/run_suite.py when it runs a PostgreSQL pass too


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.one_database` tests run once per `make test`: in the SQLite pass, except those
    of ONE_DATABASE_IN_POSTGRESQL_PASS, which run in the PostgreSQL pass when there is one. Skipped
    before any of their fixtures start (a live server, a browser context). A pass run on its own
    runs them all on SQLite, and on PostgreSQL only the moved ones;
    TEST_ONE_DATABASE_ON_POSTGRESQL=1 runs every one on PostgreSQL too, to check that claim."""
    on_postgres = bool(_postgres_url())
    if on_postgres and os.environ.get("TEST_ONE_DATABASE_ON_POSTGRESQL", "") not in ("", "0"):
        return
    both_passes = os.environ.get(BOTH_PASSES) == "1"
    for item in items:
        if not item.get_closest_marker("one_database"):
            continue
        moved = item.path.name in ONE_DATABASE_IN_POSTGRESQL_PASS
        if on_postgres and not moved:
            item.add_marker(pytest.mark.skip(reason=ONE_DATABASE_REASON))
        elif not on_postgres and moved and both_passes:
            item.add_marker(pytest.mark.skip(reason=MOVED_REASON))


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """Staff passwords hash with argon2-cffi's production profile (~0.5 s here); tests need not pay it.

    Still Argon2id, and still stronger than the "old parameters" the rehash test plants.
    """
    from argon2 import PasswordHasher

    monkeypatch.setattr(staff_service, "password_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def database_kind() -> str:
    return "postgresql" if _postgres_url() else "sqlite"


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory, database_kind):
    """Migrated once per session: a SQLite file to copy, or a PostgreSQL database to truncate."""
    if database_kind == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        _migrate(f"sqlite:///{path}")
        yield path
        return
    admin_url = make_url(_postgres_url())
    name = scratch_database_name("test")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A commit need not wait for the disk (4-8 ms each here, most of a beacon test's time): what
            # commits and what others see are unchanged; only a crash of the whole server could lose one.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(f"TEST_DATABASE_URL names a PostgreSQL that does not answer: {type(exc).__name__}: {exc}",
                    pytrace=False)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    _migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _shared_server_home(tmp_path_factory) -> Path:
    """This worker's shared live server keeps its SQLite file, content and rate-limit counters here."""
    return tmp_path_factory.mktemp("shared-server")


def uses_shared_server(request) -> bool:
    """The test (or a fixture it uses) asks for `live_server`: its database and content are the shared server's."""
    return "live_server" in request.fixturenames


def restore_sqlite(template: Path, path: Path) -> None:
    """Make `path` a copy of the freshly migrated `template`, while a server may hold connections to it.

    Through SQLite's online backup: it takes the write lock and replaces every page, and open
    connections see the new content at their next read (copying the file over them would not).
    """
    if not path.exists():
        shutil.copy(template, path)
        return
    source, target = sqlite3.connect(template), sqlite3.connect(path, timeout=30)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


@pytest.fixture
def database_url(request, _database_template, database_kind, tmp_path, _shared_server_home):
    if database_kind == "sqlite":
        if uses_shared_server(request):
            path = _shared_server_home / "tracker.db"
            reset_database(f"sqlite:///{path}", _database_template)
        else:
            path = tmp_path / "tracker.db"
            shutil.copy(_database_template, path)
        yield f"sqlite:///{path}"
        return
    yield _database_template
    reset_database(_database_template, _database_template)


def reset_database(url: str, template: Path | str) -> None:
    """The database at `url` as freshly migrated: SQLite restored from the template file,
    PostgreSQL (the template database itself) emptied."""
    if url.startswith("sqlite:///"):
        restore_sqlite(Path(template), Path(url.removeprefix("sqlite:///")))
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        empty_postgres(conn)
    engine.dispose()


def empty_postgres(conn) -> None:
    """Every table but alembic_version emptied and every sequence restarted, as
    ``TRUNCATE ... RESTART IDENTITY CASCADE`` would, at a tenth of its cost.

    TRUNCATE gives each of the ~30 tables (and their indexes) new files and scans shared buffers
    for each: about 1 s a test on this 2-core machine under load, ~800 times in the PostgreSQL pass.
    The tables are locked as TRUNCATE locks them (so a transaction of the live server still in
    flight ends first and its rows go too), then emptied children first; with a cycle of foreign
    keys between tables, TRUNCATE it is.
    """
    tables = [row[0] for row in conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
    references = conn.execute(text(
        "SELECT child.relname, parent.relname FROM pg_constraint fk JOIN pg_class child ON child.oid = fk.conrelid "
        "JOIN pg_class parent ON parent.oid = fk.confrelid "
        "WHERE fk.contype = 'f' AND fk.connamespace = 'public'::regnamespace")).all()
    order = children_first(tables, references)
    quoted = ", ".join(f'"{t}"' for t in tables)
    if order is None:
        conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        return
    conn.execute(text(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
    for table in order:
        conn.execute(text(f'DELETE FROM "{table}"'))
    conn.execute(text("SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s "
                      "JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace"))


def children_first(tables: list[str], references) -> list[str] | None:
    """``tables`` with each table before every table it references (a table may reference itself);
    None when references between tables make a cycle."""
    parents = {t: {parent for child, parent in references if child == t and parent != t} for t in tables}
    order: list[str] = []
    left = set(tables)
    while left:
        # A table no remaining table references can go now.
        free = sorted(t for t in left if not any(t in parents[other] for other in left))
        if not free:
            return None
        order += free
        left -= set(free)
    return order


class HttpsClient(FlaskClient):
    """The test client speaks https:// so Secure cookies behave as in a browser.

    Like a browser posting a form of this site, it sends a same-origin Referer
    (Flask-WTF's strict HTTPS CSRF check wants one); pass ``headers={"Referer": ...}``
    to send another.
    """

    def open(self, *args, **kwargs):
        if args and isinstance(args[0], str):
            kwargs.setdefault("base_url", "https://localhost")
            headers = dict(kwargs.get("headers") or {})
            headers.setdefault("Referer", kwargs["base_url"] + "/")
            kwargs["headers"] = headers
        # Each request gets its own app context, as under gunicorn: otherwise it would share
        # the test's `g` (a stale CSRF token, flags from the previous request) and DB session.
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def content_dir(request, tmp_path, _shared_server_home) -> Path:
    """The test's empty content store: its own, or the shared live server's, emptied."""
    if not uses_shared_server(request):
        return tmp_path / "content"
    folder = _shared_server_home / "content"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest.fixture
def app_config(database_url, content_dir) -> dict:
    """Override entries here (in a test module's own fixture) before `app` is built."""
    return _config(database_url, CONTENT_DIR=str(content_dir))


@pytest.fixture
def app(app_config):
    application = create_app(dict(app_config))
    application.test_client_class = HttpsClient
    share_compilation(application)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_client(app):
    """make_client(name=..., anonymised=..., origins=[...], licence=...) -> (Client, key)."""
    counter = iter(range(1, 10_000))

    def factory(name: str | None = None, **kwargs):
        return licence_terms.create_client_with_term(
            db.session, name=name or f"Client {next(counter)}", actor="test", params=TEST_PARAMS, **kwargs
        )

    return factory


@pytest.fixture
def make_staff(app):
    """make_staff(role, client=None, email=None) -> StaffUser with password TEST_PASSWORD."""
    counter = iter(range(1, 10_000))

    def factory(role: str, client=None, email: str | None = None):
        return staff_service.create_staff(
            db.session, email=email or f"{role}{next(counter)}@example.com", role=role,
            password=TEST_PASSWORD, client=client, actor="test",
        )

    return factory


def csrf_token_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def login(client):
    """login(user) signs the test client in through the real form."""

    def do_login(user, password: str = TEST_PASSWORD):
        page = client.get("/login")
        token = csrf_token_from(page.get_data(as_text=True))
        # WTF_CSRF_SSL_STRICT: over HTTPS the form must come with a same-site Referer, as from a browser.
        response = client.post("/login", data={"email": user.email, "password": password, "csrf_token": token},
                               headers={"Referer": "https://localhost/login"})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    return do_login


def beacon_body(key: str, **fields) -> dict:
    body = {"key": key, "course": "Anti-Bribery", "student_id": "s-1", "student_name": "Doe, Jane",
            "event_id": str(uuid.uuid4())}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


# --- a real gunicorn over HTTPS -------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return {"ca": str(ca_path), "cert": str(cert_path), "key": str(key_path)}


class LiveServer:
    """gunicorn serving wsgi:app over HTTPS on a free port, against the test's database."""

    def __init__(self, database_url: str, tls: dict, log_path: Path, extra_env: dict | None = None):
        self.database_url = database_url
        self.tls = tls
        self.log_path = log_path
        self.log_offset = 0  # where the current test's part of the log begins (a shared server's)
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    # Ready when /healthz answers 200; a server meant to run without its database
    # is ready as soon as it answers at all.
    ready_when_any_answer = False
    # A probe that gives up early hangs up on a worker mid-answer, and gunicorn logs that as a
    # Traceback (the flaky "no Traceback in the log" checks on a loaded machine): wait patiently.
    ready_timeout = 10.0

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PORT"))}
        env.update({
            "APP_ENV": "test", **TEST_SECRETS, "DATABASE_URL": self.database_url,
            "PORT": str(self.port), "CERT_FILE": self.tls["cert"], "KEY_FILE": self.tls["key"],
            "PUBLIC_URL": self.url, "WEB_CONCURRENCY": "2", "PSEUDONYM_TIME_COST": str(TEST_PARAMS.time_cost),
            "PSEUDONYM_MEMORY_KIB": str(TEST_PARAMS.memory_kib), "BEACON_RATE_LIMIT": "100000/minute",
            "CLIENT_CACHE_SECONDS": "0",
            # The default storage kind, in this server's own file: counters shared by its workers only.
            "RATELIMIT_STORAGE_URI": f"machine://{self.log_path.parent.resolve() / 'ratelimits.db'}",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> LiveServer:
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                answer = requests.get(self.url + "/healthz", verify=self.tls["ca"], timeout=self.ready_timeout)
                if self.ready_when_any_answer or answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # Quick shutdown (SIGINT): a graceful one waits out sync workers blocked on a
            # browser's idle pre-opened connection. Every acknowledged beacon is committed already.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if getattr(self, "log", None):
            self.log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """The log written since the current test began."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self.log_offset)
            return fh.read().decode(errors="replace")


@pytest.fixture(scope="session")
def _shared_live_server(_shared_server_home, _database_template, database_kind, tls_ca):
    """One default-configured gunicorn per xdist worker, started when a test first needs it.

    Each test gets it with the database as freshly migrated (SQLite: restored from the template
    before the test; PostgreSQL: truncated after each test), an empty content store and no
    rate-limit counts; its clients are cached for 0 s (CLIENT_CACHE_SECONDS), so it sees each
    test's rows as they are. A test that stops it gets a new one next time.
    """
    url = f"sqlite:///{_shared_server_home / 'tracker.db'}" if database_kind == "sqlite" else _database_template
    server = LiveServer(url, tls_ca, _shared_server_home / "gunicorn.log",
                        extra_env={"CONTENT_DIR": str(_shared_server_home / "content")})
    yield server
    server.stop()


@pytest.fixture
def live_server(_shared_live_server, database_url, app):
    """A real gunicorn over HTTPS sharing the test's database (the `app` fixture sees its writes).

    The worker's shared server (above); `own_live_server` starts one for the test alone.
    """
    server = _shared_live_server
    assert app.config["CONTENT_DIR"] == server.extra_env["CONTENT_DIR"], "app_config must keep content_dir"
    counters = Path(server.env()["RATELIMIT_STORAGE_URI"].removeprefix("machine://"))
    if counters.exists():
        with sqlite3.connect(counters, timeout=30) as conn:
            conn.execute("DELETE FROM hits")
        conn.close()
    server.log_offset = server.log_path.stat().st_size if server.log_path.exists() else 0
    if not server.running():
        server.start()
    yield server


@pytest.fixture
def own_live_server(database_url, tls_ca, tmp_path, app):
    """A gunicorn for this test alone (one it kills parts of, say), on the test's own database."""
    server = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log",
                        extra_env={"CONTENT_DIR": app.config["CONTENT_DIR"]}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require(path is not None, "Debian's chromium is not installed (apt-get install -y chromium)")
    return path


def spki_hash(cert_path: str) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate, as Chromium pins it."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@pytest.fixture(scope="session")
def browser(chromium_path, tls_ca):
    """Playwright driving Debian's Chromium (never a downloaded browser).

    It trusts the live server's test certificate (and only that one) by its
    public key, so beacons sent while a page unloads (keepalive) are verified
    like any other request instead of relying on a per-page override. Browser UI that no
    test looks at is off (tests/chromium_launch.py).
    """
    from chromium_launch import launch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = launch(pw, chromium_path, [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            f"--ignore-certificate-errors-spki-list={spki_hash(tls_ca['cert'])}"])
        yield launched
        launched.close()


def watched_page(browser, width: int = 1280, height: int = 900, timeout_ms: int = 10_000,
                 ignore_https_errors: bool = True):
    """(context, page) in a new browser context; ``page.problems`` collects script errors and CSP
    refusals (not the 400s of forms sent back with errors on purpose, nor a missing favicon)."""
    context = browser.new_context(ignore_https_errors=ignore_https_errors, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    return context, page


@pytest.fixture
def screenshots_dir() -> Path:
    """Screenshots taken by browser tests, kept for people to look at."""
    folder = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free loopback port keeping every message (tests/outbox_helpers.py)."""
    from outbox_helpers import SmtpSink

    sink = SmtpSink()
    yield sink
    sink.stop()
