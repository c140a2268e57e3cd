"""Beacon ingest benchmark: `make bench` (or `.venv/bin/python bench/ingest.py`).

Starts the real gunicorn (``gunicorn.conf.py``, HTTPS with a self-signed
ECDSA certificate, a free loopback port) on SQLite and on PostgreSQL (a
scratch database on 127.0.0.1:5432, user postgres, created and dropped here),
drives beacons with wrk (``bench/beacon.lua``: fresh UUID event IDs; new
learners, or a fixed pool of returning ones) and reports beacons/s and
p50/p99 latency, each as a ratio to a no-op Flask endpoint
(``bench/wsgi_bench.py``) served by the same gunicorn in the same run.

The machine is shared and small: absolute figures move with whatever else
runs, so only ratios measured in the same run are compared with the targets.
Targets are reported, never asserted.

Each database is measured in both set-ups: gunicorn terminating TLS itself
(``make run``) and the production front (deploy/nginx/tracker.conf in a real
nginx before gunicorn on plain HTTP). Then, for comparison in the same run:
the no-op and verbatim beacons with one worker (how it scales with cores),
stock gunicorn (its defaults, ``--certfile/--keyfile``) serving the no-op,
and Ralph LRS 5 (file backend, installed from PyPI into bench/.ralph-venv on
the first run) taking xAPI statements from the same wrk.

Options: ``--duration`` seconds per case (warm-up excluded), ``--only
sqlite|postgresql``, ``--front direct|nginx``, ``--worker-class``/
``--workers``/``--threads`` (passed to gunicorn.conf.py through its
environment variables), ``--keepalive`` (reuse connections; by default every
beacon opens a new TLS connection, as browsers mostly do), ``--no-tls-check``,
``--no-ralph``, ``--no-scaling``, ``--short`` (the suite's smoke run).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
LUA = BENCH / "beacon.lua"
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PRODUCTION_ARGON2 = {"time_cost": 2, "memory_kib": 19456, "parallelism": 1}
RETURNING_POOL = 48

sys.path.insert(0, str(ROOT))

@dataclass
class Result:
    case: str
    database: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0  # gunicorn workers (and PostgreSQL backends) while measuring

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request: what the request costs, whatever else the machine runs."""
        return self.cpu_seconds * 1000 / self.requests if self.requests else 0.0


# --- set-up -------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk is missing: installing Debian's package (apt-get install -y wrk)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True)
    path = shutil.which("wrk")
    if not path:
        sys.exit("wrk is still missing after apt-get install")
    return path


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def unverified_tls() -> ssl.SSLContext:
    """For readiness probes of the bench's own servers (self-signed certificates on loopback)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA certificate for 127.0.0.1, as `make run` makes."""
    from app.cli.local import write_self_signed

    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    write_self_signed(cert_path, key_path, ("127.0.0.1", "localhost"))
    return cert_path, key_path


@contextlib.contextmanager
def scratch_postgres():
    """A fresh database on the local PostgreSQL, dropped afterwards (even on Ctrl-C)."""
    import psycopg

    name = f"tracker_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_STATE: dict[str, Path] = {}


def state_dir() -> Path:
    """The app's own state during the run (its rate-limit counters), in a scratch folder removed at exit:
    never the checkout's instance/, which `make run` owns."""
    if "dir" not in _STATE:
        _STATE["dir"] = Path(tempfile.mkdtemp(prefix="tracker-bench-state-"))
        atexit.register(shutil.rmtree, _STATE["dir"], True)
    return _STATE["dir"]


def base_env(database_url: str, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT", "CERT_FILE", "KEY_FILE")}
    env.update({
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        # Every secret given, so the app generates none into instance/secrets.json.
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "PSEUDONYM_SECRET": "bench-pseudonym-secret-not-for-production",
        "WEBHOOK_SECRET_KEYS": base64.urlsafe_b64encode(b"bench-webhook-key-not-for-prod!!").decode("ascii"),
        # The default storage kind (a file shared by the server's workers), in the scratch folder.
        "RATELIMIT_STORAGE_URI": f"machine://{state_dir() / 'ratelimits.db'}",
        "PSEUDONYM_TIME_COST": str(PRODUCTION_ARGON2["time_cost"]),
        "PSEUDONYM_MEMORY_KIB": str(PRODUCTION_ARGON2["memory_kib"]),
        "PSEUDONYM_PARALLELISM": str(PRODUCTION_ARGON2["parallelism"]),
        # The limiter stays on (it is part of the beacon path), just far above the load.
        "BEACON_RATE_LIMIT": "100000000/minute",
        "LOG_LEVEL": "warning",
    })
    env.update(extra or {})
    return env


def prepare_database(database_url: str) -> dict[str, str]:
    """Migrate and create the clients (verbatim, anonymised, and verbatim with an empty placeholder
    list, so the placeholder check's cost shows); returns their beacon keys.

    The same `flask` commands a user runs, invoked in this process: each `flask` process would
    import and build the app again (about 2.5 s of CPU each, ten of them a run)."""
    from app import create_app
    from app.extensions import db

    app = create_app({"ENV": base_env(database_url)})
    runner = app.test_cli_runner()

    def flask(*args: str) -> str:
        done = runner.invoke(args=list(args))
        if done.exit_code != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed: {done.output}") from done.exception
        return done.stdout

    keys = {}
    with app.app_context():
        flask("db", "upgrade")
        for label, flags in (("verbatim", []), ("anonymised", ["--anonymised"]), ("verbatim-no-placeholders", [])):
            out = json.loads(flask("client", "create", "--name", f"Bench {label}", *flags, "--json"))
            keys[label] = out["key"]
            if label == "verbatim-no-placeholders":
                flask("held-back", "policy", "--client", out["slug"], "--clear")
        db.session.remove()
        db.engine.dispose()
    return keys


class Gunicorn:
    """gunicorn serving bench/wsgi_bench.py: over HTTPS with a configuration file (the direct
    set-up), over plain HTTP for nginx (``plain_http``), or gunicorn's stock set-up (``stock``:
    no configuration file, only ``--certfile/--keyfile``, sync workers, one per core)."""

    def __init__(self, database_url: str, cert: tuple[Path, Path], log_path: Path,
                 config: Path = ROOT / "gunicorn.conf.py", env: dict | None = None,
                 plain_http: bool = False, stock: bool = False):
        self.port = free_port()
        self.plain_http = plain_http
        self.url = f"{'http' if plain_http else 'https'}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = base_env(database_url, {
            "PORT": str(self.port), "HOST": "127.0.0.1", "CERT_FILE": str(cert[0]), "KEY_FILE": str(cert[1]),
            "PUBLIC_URL": self.url, **(env or {}),
        })
        if plain_http:
            self.env.update({"PLAIN_HTTP": "1", "BIND": f"127.0.0.1:{self.port}", "TRUSTED_PROXIES": "1"})
        # gunicorn.conf.py's default: one worker per core.
        self.workers = int(self.env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
        self.command = [str(BIN / "gunicorn"), "-c", str(config), "bench.wsgi_bench:app"]
        if stock:
            empty = log_path.parent / "stock.conf.py"
            empty.write_text("# gunicorn's defaults\n")
            self.command = [str(BIN / "gunicorn"), "-c", str(empty), "--certfile", str(cert[0]),
                            "--keyfile", str(cert[1]), "--bind", f"127.0.0.1:{self.port}",
                            "--workers", str(self.workers), "bench.wsgi_bench:app"]
        self.ready_dir = Path(tempfile.mkdtemp(prefix="ready-", dir=log_path.parent))
        self.env["BENCH_READY_DIR"] = str(self.ready_dir)

    def __enter__(self) -> Gunicorn:
        self.log = open(self.log_path, "ab")
        # Access log lines go to /dev/null (they would fill the disk); errors are kept.
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        context = unverified_tls()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.fail("gunicorn exited")
            if len(list(self.ready_dir.iterdir())) >= self.workers:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(self.url + "/healthz", timeout=5,
                                                context=None if self.plain_http else context) as response:
                        if response.status == 200:
                            return self
            time.sleep(0.2)
        self.__exit__()
        self.fail("gunicorn did not answer /healthz")

    def server_pids(self) -> list[int]:
        pids = [self.process.pid, *children(self.process.pid)]
        database = self.env["DATABASE_URL"]
        if database.startswith("postgresql"):
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                pids += [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database.rsplit("/", 1)[1],))]
        return pids

    def cpu(self) -> dict[int, float]:
        return {pid: process_cpu(pid) for pid in self.server_pids()}

    def fail(self, message: str) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        kept = RESULTS / self.log_path.name
        shutil.copy(self.log_path, kept)
        raise RuntimeError(f"{message}; see {kept}")

    def __exit__(self, *exc) -> None:
        stop(self.process)
        self.log.close()


def process_tree_cpu(pid: int) -> dict[int, float]:
    return {p: process_cpu(p) for p in (pid, *children(pid))}


class Fronted:
    """The production front: deploy/nginx/tracker.conf in a real nginx (tests/nginx_front.py,
    the flood limits taken out: one load generator is not many learners) before gunicorn on
    plain HTTP, with keep-alive between them. Server CPU counts nginx and gunicorn."""

    def __init__(self, database_url: str, cert: tuple[Path, Path], folder: Path, env: dict | None = None):
        sys.path.insert(0, str(ROOT / "tests"))
        from nginx_front import NGINX, Nginx

        if NGINX is None:
            sys.exit("nginx is missing: apt-get install -y nginx")
        folder.mkdir(parents=True, exist_ok=True)
        self.upstream = Gunicorn(database_url, cert, folder / "gunicorn.log", env=env, plain_http=True)
        # One nginx worker per core, as Debian's nginx.conf (worker_processes auto) runs it.
        self.nginx = Nginx(folder, str(cert[0]), str(cert[1]), self.upstream.port, flood_limits=False,
                           workers="auto", access_log="sessions.log", log_format="$ssl_session_reused")
        self.url = self.nginx.url
        self.sessions_log = folder / "sessions.log"

    def __enter__(self) -> Fronted:
        self.upstream.__enter__()
        self.nginx.start()
        return self

    def cpu(self) -> dict[int, float]:
        return {**self.upstream.cpu(), **process_tree_cpu(self.nginx.process.pid)}

    def resumed_share(self) -> float | None:
        """Share of TLS handshakes nginx resumed from its session cache (after stop: the log is flushed)."""
        with contextlib.suppress(OSError):
            flags = self.sessions_log.read_text().split()
            return flags.count("r") / len(flags) if flags else None
        return None

    def __exit__(self, *exc) -> None:
        self.nginx.stop()
        self.upstream.__exit__(*exc)


RALPH_SPEC = "ralph-malph[backend-fs,lrs,cli]>=5,<6"
RALPH_VENV = BENCH / ".ralph-venv"  # git-ignored; made on the first run from PyPI


class RalphLRS:
    """Ralph LRS 5 (an xAPI learning record store, Python, FastAPI) with its file backend, served
    by uvicorn with one worker per core over HTTPS with the same certificate: the peer the
    beacon path is compared with, loaded by the same wrk in the same way."""

    user, password = "bench", "bench-password"

    def __init__(self, cert: tuple[Path, Path], folder: Path, workers: int):
        self.folder, self.cert, self.workers = folder, cert, workers
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.key = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    @staticmethod
    def ensure_installed() -> Path:
        """Ralph's virtual environment, made once from PyPI. Under a lock and marked complete only at
        the end: parallel test workers and bench runs ask at once, and a half-made one (its `ralph`
        script there, `requests` not yet) failed the others."""
        import fcntl

        bin_dir, complete = RALPH_VENV / "bin", RALPH_VENV / ".complete"
        if complete.exists():
            return bin_dir
        with open(RALPH_VENV.with_name(".ralph-venv.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not complete.exists():
                shutil.rmtree(RALPH_VENV, ignore_errors=True)
                print(f"installing {RALPH_SPEC} into {RALPH_VENV.relative_to(ROOT)} (once)", flush=True)
                subprocess.run([sys.executable, "-m", "venv", str(RALPH_VENV)], check=True)
                # ralph's CLI (`ralph auth`) imports requests without declaring it.
                subprocess.run([str(bin_dir / "pip"), "install", "-q", RALPH_SPEC, "requests>=2,<3"], check=True)
                complete.touch()
        return bin_dir

    @classmethod
    def serve(cls, folder: Path, user: str, password: str, port: int, workers: int, log,
              tls: tuple[Path, Path] | None = None) -> subprocess.Popen:
        """Ralph with its file backend in ``folder``, one Basic account, on 127.0.0.1:``port``
        (HTTPS with ``tls``): the bench's peer here, and the test LMS's LRS in tests/xapi_lms.py."""
        bin_dir = cls.ensure_installed()
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RALPH_APP_DIR": str(folder), "RALPH_AUTH_FILE": str(folder / "auth.json"),
               "RALPH_RUNSERVER_BACKEND": "fs",
               "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(folder),
               "RALPH_BACKENDS__DATA__FS__DEFAULT_DIRECTORY_PATH": str(folder)}
        subprocess.run([str(bin_dir / "ralph"), "auth", "-u", user, "-p", password, "-s", "all",
                        "-M", f"mailto:{user}@example.com", "-w"], env=env, cwd=folder, check=True,
                       capture_output=True)
        secure = ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])] if tls else []
        return subprocess.Popen(
            [str(bin_dir / "uvicorn"), "ralph_app:app", "--app-dir", str(BENCH), "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers), *secure, "--log-level", "warning", "--no-access-log"],
            cwd=folder, env=env, stdout=log, stderr=log)

    def __enter__(self) -> RalphLRS:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder / "uvicorn.log", "ab")
        self.process = self.serve(self.folder, self.user, self.password, self.port, self.workers, self.log,
                                  tls=self.cert)
        context = unverified_tls()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Ralph LRS exited: " + (self.folder / "uvicorn.log").read_text()[-2000:])
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/__heartbeat__", context=context, timeout=5) as response:
                    if response.status == 200:
                        return self
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("Ralph LRS did not answer /__heartbeat__")

    def cpu(self) -> dict[int, float]:
        return process_tree_cpu(self.process.pid)

    def __exit__(self, *exc) -> None:
        stop(self.process)
        self.log.close()


PATHS = {"noop": "/bench/noop", "xapi": "/xAPI/statements"}


def run_wrk(wrk: str, url: str, mode: str, key: str, seconds: float, args) -> dict:
    seed = int(time.time() * 1000) % 1_000_000_007
    command = [wrk, "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", str(LUA), url + PATHS.get(mode, "/api/v1/beacons"),
               "--", mode, key, str(RETURNING_POOL), str(seed), "0" if args.keepalive else "1"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk printed no summary:\n{out}")


def measure(wrk: str, server: Gunicorn, case: str, database: str, mode: str, key: str, args,
            warmup: float, seconds: float) -> Result:
    if warmup > 0:  # the short mode has none
        run_wrk(wrk, server.url, mode, key, warmup, args)
    before = server.cpu()
    data = run_wrk(wrk, server.url, mode, key, seconds, args)
    after = server.cpu()
    # Processes that appeared during the run count from zero; the pool keeps backends, so few do.
    cpu_seconds = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    errors = {k: data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
              if data[k]}
    result = Result(case, database, data["requests"], data["duration_us"] / 1e6,
                    data["p50_us"] / 1000, data["p99_us"] / 1000, errors, cpu_seconds)
    print(f"  {database:<10} {case:<34} {result.rate:8.0f}/s  p50 {result.p50_ms:7.1f} ms"
          f"  p99 {result.p99_ms:7.1f} ms  server CPU {result.cpu_ms:5.2f} ms/req"
          f"{'  errors ' + json.dumps(errors) if errors else ''}", flush=True)
    return result


def argon2_bound() -> tuple[float, float]:
    """(CPU seconds for one production Argon2id hash, the bound cores / that) in this process."""
    from argon2.low_level import Type, hash_secret_raw

    def one(i: int) -> None:
        hash_secret_raw(secret=i.to_bytes(32, "big"), salt=b"0123456789abcdef",
                        time_cost=PRODUCTION_ARGON2["time_cost"], memory_cost=PRODUCTION_ARGON2["memory_kib"],
                        parallelism=PRODUCTION_ARGON2["parallelism"], hash_len=20, type=Type.ID)

    one(0)
    n = 2 if "--short" in sys.argv else 30
    start = time.process_time()
    for i in range(1, n + 1):
        one(i)
    cpu = (time.process_time() - start) / n
    return cpu, (os.cpu_count() or 1) / cpu


def argon2_parallel_rate(seconds: float = 3.0) -> tuple[float, float]:
    """(hashes per wall-clock second, CPU seconds per hash) with one thread per core, right now.

    On a shared machine this is the bound as far as the CPU we actually get
    allows (argon2-cffi releases the GIL while hashing).
    """
    import threading

    from argon2.low_level import Type, hash_secret_raw

    done = [0] * (os.cpu_count() or 1)
    stop = time.monotonic() + seconds

    def work(slot: int) -> None:
        i = 0
        while time.monotonic() < stop:
            hash_secret_raw(secret=(slot * 1_000_000 + i).to_bytes(32, "big"), salt=b"0123456789abcdef",
                            time_cost=PRODUCTION_ARGON2["time_cost"], memory_cost=PRODUCTION_ARGON2["memory_kib"],
                            parallelism=PRODUCTION_ARGON2["parallelism"], hash_len=20, type=Type.ID)
            i += 1
        done[slot] = i

    start, cpu = time.monotonic(), time.process_time()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(done))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - start), (time.process_time() - cpu) / max(sum(done), 1)


def merge(parts: list[Result]) -> Result:
    """Rounds of one case as one result: total requests over total time; latency weighted by requests."""
    total = sum(p.requests for p in parts) or 1
    errors: dict = {}
    for part in parts:
        for name, n in part.errors.items():
            errors[name] = errors.get(name, 0) + n
    return Result(parts[0].case, parts[0].database, sum(p.requests for p in parts), sum(p.seconds for p in parts),
                  sum(p.p50_ms * p.requests for p in parts) / total,
                  max(p.p99_ms for p in parts), errors, sum(p.cpu_seconds for p in parts))


CASES = (
    # (case, wrk mode, client)
    ("no-op", "noop", None),
    ("verbatim, new learners", "new", "verbatim"),
    # The same client kind with an empty placeholder list: the check's cost is the difference.
    ("verbatim, new learners, no placeholder list", "new", "verbatim-no-placeholders"),
    # Every beacon `undefined`: held back (the held_back_beacons path).
    ("placeholder IDs, held back", "placeholder", "verbatim"),
    ("verbatim, returning learners", "returning", "verbatim"),
    ("anonymised, returning learners", "returning", "anonymised"),
    ("anonymised, new learners", "new", "anonymised"),
)


def serve(front: str, database_url: str, cert, tmp: Path, label: str, env: dict):
    if front == "nginx":
        return Fronted(database_url, cert, tmp / f"front-{label}", env=env)
    return Gunicorn(database_url, cert, tmp / f"gunicorn-{label}.log", env=env)


def bench_database(wrk: str, database: str, database_url: str, cert, args, tmp: Path, front: str,
                   argon2_rates: dict[str, list[tuple[float, float]]], notes: list[str]) -> list[Result]:
    """Every case, in ``args.rounds`` interleaved rounds so a change in the machine's load hits them alike."""
    keys = prepare_database(database_url)
    label = database if front == "direct" else f"{database}+nginx"
    parts: dict[str, list[Result]] = {case: [] for case, _, _ in CASES}
    slice_seconds = args.duration / args.rounds
    env = {**args.gunicorn_env, "BENCH_RETURNING_POOL": str(RETURNING_POOL)}
    with serve(front, database_url, cert, tmp, label, env) as server:
        for _ in range(args.rounds):
            for case, mode, client in CASES:
                parts[case].append(measure(wrk, server, case, label, mode, keys.get(client, ""), args,
                                           args.warmup, slice_seconds))
                if mode == "new" and client == "anonymised":
                    argon2_rates.setdefault(label, []).append(argon2_parallel_rate(0.2 if args.short else 3))
    if isinstance(server, Fronted) and server.resumed_share() is not None:
        notes.append(f"{label}: nginx resumed {server.resumed_share():.0%} of the TLS handshakes from its "
                     "session cache (wrk offers the previous session on each new connection, as browsers do)")
    return [merge(p) for p in parts.values()]


def bench_scaling(wrk: str, database: str, database_url: str, cert, args, tmp: Path) -> list[Result]:
    """The no-op and verbatim beacons with one gunicorn worker, behind nginx (compared with the
    two-worker figures of the same run: how the set-up scales with cores)."""
    keys = prepare_database(database_url)
    label = f"{database}+nginx, 1 worker"
    env = {**args.gunicorn_env, "WEB_CONCURRENCY": "1"}
    results = []
    with serve("nginx", database_url, cert, tmp, f"{database}-1-worker", env) as server:
        for case, mode, client in CASES[:2]:
            results.append(measure(wrk, server, case, label, mode, keys.get(client, ""), args,
                                   args.warmup, args.duration / 2))
    return results


def bench_stock(wrk: str, database_url: str, cert, tmp: Path, args) -> list[Result]:
    """gunicorn as it comes (its defaults, ``--certfile/--keyfile``, one sync worker per core) serving
    the no-op: the reference for a new TLS connection per beacon."""
    prepare_database(database_url)
    with Gunicorn(database_url, cert, tmp / "gunicorn-stock.log", stock=True) as server:
        return [measure(wrk, server, "no-op, stock gunicorn", "tls", "noop", "", args, args.warmup, args.duration / 2)]


def bench_ralph(wrk: str, cert, tmp: Path, args) -> list[Result]:
    with RalphLRS(cert, tmp / "ralph", os.cpu_count() or 1) as ralph:
        # Ralph checks HTTP Basic credentials with bcrypt (~0.3 s) and caches the answer per worker;
        # 32 first requests at once would all hash and time out. Warm each worker's cache gently.
        run_wrk(wrk, ralph.url, "xapi", ralph.key, 5, argparse.Namespace(**{**vars(args), "connections": 2}))
        return [measure(wrk, ralph, "xAPI statements, new learners", "ralph", "xapi", ralph.key, args,
                        args.warmup, args.duration / 2)]


def by_case(results: list[Result], database: str) -> dict[str, Result]:
    return {r.case: r for r in results if r.database == database}


def ratio(numerator: float, denominator: float) -> str:
    """numerator / denominator to two places, or "" when the denominator was not measured (0):
    a short run on a loaded machine may complete nothing in a case, and the report still prints."""
    return f"{numerator / denominator:.2f}" if denominator else ""


def ratio_cells(r: Result, ref: Result) -> tuple[str, str, str, str]:
    return (ratio(r.rate, ref.rate), ratio(r.p50_ms, ref.p50_ms), ratio(r.p99_ms, ref.p99_ms),
            ratio(ref.cpu_ms, r.cpu_ms))


def verdict(target: float | None, *ratios: str) -> str:
    if target is None or not ratios[0]:
        return ""
    return f">= {target:g}: " + " / ".join(
        ("met" if float(x) >= target else "NOT met") if x else "?" for x in ratios)


def report(results: list[Result], hash_cpu: float, bound: float, args, started: str, elapsed: float,
           argon2_rates: dict[str, list[tuple[float, float]]], notes: list[str]) -> str:
    workers = args.gunicorn_env.get("WEB_CONCURRENCY", f"{os.cpu_count() or 1} (one per core)")
    lines = [
        f"# Beacon ingest benchmark, {started}",
        "",
        f"command: {' '.join(['.venv/bin/python', 'bench/ingest.py', *sys.argv[1:]])}",
        f"machine: {os.cpu_count()} cores (shared: absolute figures vary, compare the ratios of one run)",
        f"gunicorn: gunicorn.conf.py, worker class {args.gunicorn_env.get('GUNICORN_WORKER_CLASS', 'gthread')}, "
        f"workers {workers}, threads {args.gunicorn_env.get('GUNICORN_THREADS', '16')}; "
        f"direct: gunicorn terminates TLS (ECDSA P-256, self-signed); +nginx: deploy/nginx/tracker.conf "
        f"terminates it and passes plain HTTP over keep-alive; "
        f"{'keep-alive' if args.keepalive else 'a new TLS connection per beacon'}",
        f"wrk: {args.wrk_threads} threads, {args.connections} connections, {args.duration:g} s per case "
        f"after a warm-up; returning learners: a pool of {RETURNING_POOL}",
        f"Argon2id m={PRODUCTION_ARGON2['memory_kib']} KiB t={PRODUCTION_ARGON2['time_cost']}: "
        f"{hash_cpu * 1000:.1f} ms CPU per hash, bound {bound:.0f} new learners/s on {os.cpu_count()} cores",
        f"run time: {elapsed:.0f} s",
        "",
        "| set-up | case | beacons/s | p50 ms | p99 ms | server CPU ms | rate ratio | p50 ratio | p99 ratio "
        "| CPU ratio | vs | target: rate / CPU ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    groups = list(dict.fromkeys(r.database for r in results))
    for database in groups:
        cases = by_case(results, database)
        for case, r in cases.items():
            ref_name, target = reference(database, case)
            ratio_rate = ratio_p50 = ratio_p99 = ratio_cpu = ""
            if ref_name == "argon2 bound":
                ratio_rate = ratio(r.rate, bound)
                ratio_cpu = ratio(hash_cpu * 1000, r.cpu_ms)
            elif ref_name and ref_name in cases:
                ratio_rate, ratio_p50, ratio_p99, ratio_cpu = ratio_cells(r, cases[ref_name])
            errors = f" (errors {json.dumps(r.errors)})" if r.errors else ""
            lines.append(f"| {database} | {case}{errors} | {r.rate:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                         f"{r.cpu_ms:.2f} | {ratio_rate} | {ratio_p50} | {ratio_p99} | {ratio_cpu} | "
                         f"{ref_name or ''} | {verdict(target, ratio_rate, ratio_cpu)} |")
    comparisons = comparison_rows(results, groups)
    if comparisons:
        lines += ["", "Across set-ups (same run):", "",
                  "| compared | rate ratio | CPU ratio | target |", "| --- | ---: | ---: | --- |", *comparisons]
    lines += ["", "Rate ratio: beacons/s over the reference's (higher is better); latency ratios: over the "
              "reference's (lower is better). Server CPU: user+system CPU of the gunicorn processes (and, on "
              "PostgreSQL, the database's backends; behind nginx, nginx's too) per request; CPU ratio: the "
              "reference's CPU per request over this case's (for the Argon2 bound: one hash's CPU over a "
              "beacon's), i.e. the rate ratio the server would reach with the cores to itself. On a shared "
              "machine the CPU ratio is the steadier figure. Targets are reported, not asserted. Each case ran in "
              f"{args.rounds} interleaved rounds; p50 is request-weighted over them, p99 the worst round's."]
    for database, rates in argon2_rates.items():
        new_learners = by_case(results, database).get("anonymised, new learners")
        if rates and new_learners:
            rate = sum(r for r, _ in rates) / len(rates)
            cpu = sum(c for _, c in rates) / len(rates)
            lines.append(
                f"{database}: Argon2id hashed with one thread per core right after each anonymised-new slice: "
                f"{rate:.0f}/s at {cpu * 1000:.1f} ms CPU per hash (what this shared machine gave at that "
                f"moment); anonymised new learners / that rate = {ratio(new_learners.rate, rate) or 'not measured'}; "
                f"that hash's CPU / a new anonymised beacon's server CPU = "
                f"{ratio(cpu * 1000, new_learners.cpu_ms) or 'not measured (no beacon completed)'}.")
    lines += notes
    return "\n".join(lines)


def comparison_rows(results: list[Result], groups: list[str]) -> list[str]:
    """Ratios between set-ups: TLS against stock gunicorn, Ralph LRS, 1 vs 2 workers, p99 at load."""
    rows = []
    stock = by_case(results, "tls").get("no-op, stock gunicorn")
    ralph = by_case(results, "ralph").get("xAPI statements, new learners")
    for database in groups:
        if database in ("tls", "ralph") or ", 1 worker" in database:
            continue
        verbatim = by_case(results, database).get("verbatim, new learners")
        if verbatim is None:
            continue
        if stock:
            rate, _, _, cpu = ratio_cells(verbatim, stock)
            target = 2 if database.endswith("+nginx") else None
            rows.append(f"| {database} verbatim beacons vs stock gunicorn's no-op (a new TLS connection each) "
                        f"| {rate} | {cpu} | {verdict(target, rate, cpu) or 'as high as it gets'} |")
        if ralph:
            rate, _, _, cpu = ratio_cells(verbatim, ralph)
            rows.append(f"| {database} verbatim beacons vs Ralph LRS statements | {rate} | {cpu} | "
                        f"{verdict(20, rate, cpu)} |")
        p99 = "met" if verbatim.p99_ms < 50 else "NOT met"
        rows.append(f"| {database} verbatim beacons: p99 {verbatim.p99_ms:.1f} ms at the bench's connections "
                    f"| | | < 50 ms: {p99} |")
        one = by_case(results, f"{database}, 1 worker")
        two = by_case(results, database)
        for case in ("no-op", "verbatim, new learners"):
            if case in one and case in two:
                rate, _, _, cpu = ratio_cells(two[case], one[case])
                rows.append(f"| {database} {case}: 2 workers vs 1 | {rate} | {cpu} | |")
    return rows


def reference(database: str, case: str) -> tuple[str | None, float | None]:
    if database in ("tls", "ralph"):
        return None, None
    base = database.split("+")[0].split(",")[0]
    return {
        "no-op": (None, None),
        "verbatim, new learners": ("no-op", 0.6 if base == "sqlite" else 0.5),
        "verbatim, returning learners": ("no-op", None),
        "verbatim, new learners, no placeholder list": ("verbatim, new learners", None),
        "placeholder IDs, held back": ("verbatim, new learners", None),
        "anonymised, new learners": ("argon2 bound", 0.85),
        "anonymised, returning learners": ("verbatim, returning learners", 0.9),
    }.get(case, (None, None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per case (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per slice, not measured")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds the duration is split into")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--worker-class", default=None, help="sync or gthread (default: gunicorn.conf.py's)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keepalive", action="store_true", help="reuse connections (default: one per beacon)")
    parser.add_argument("--front", choices=("direct", "nginx"), default=None,
                        help="only this set-up (default: both, gunicorn direct and nginx in front)")
    parser.add_argument("--no-tls-check", action="store_true", help="skip stock gunicorn's no-op")
    parser.add_argument("--no-ralph", action="store_true", help="skip Ralph LRS")
    parser.add_argument("--no-scaling", action="store_true", help="skip the one-worker runs")
    parser.add_argument("--label", default="", help="added to the result file name")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run (1 s per case from 1 wrk connection, no warm-up, one round, SQLite "
                             "only, both set-ups, no stock gunicorn, Ralph or one-worker runs) that the test suite "
                             "runs so the benchmark cannot rot; its figures mean nothing")
    args = parser.parse_args(argv)
    if args.short:
        # Every case still runs through wrk and into the report; light enough to leave the suite's
        # other tests (on the same two cores) their CPU.
        args.duration, args.warmup, args.rounds = min(args.duration, 1), 0, 1
        args.connections, args.wrk_threads = 1, 1
        args.only = args.only or "sqlite"
        args.no_tls_check = args.no_ralph = args.no_scaling = True
        args.label = args.label or "short"
    args.gunicorn_env = {}
    if args.worker_class:
        args.gunicorn_env["GUNICORN_WORKER_CLASS"] = args.worker_class
    if args.workers:
        args.gunicorn_env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads:
        args.gunicorn_env["GUNICORN_THREADS"] = str(args.threads)

    # Ctrl-C and kill both unwind: gunicorn stops, the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = ensure_wrk()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.monotonic()
    hash_cpu, bound = argon2_bound()
    print(f"Argon2id (production parameters): {hash_cpu * 1000:.1f} ms CPU per hash; "
          f"bound {bound:.0f} new learners/s on {os.cpu_count()} cores", flush=True)
    results: list[Result] = []
    argon2_rates: dict[str, list[tuple[float, float]]] = {}
    notes: list[str] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cert = write_certificate(tmp)
        fronts = [args.front] if args.front else ["direct", "nginx"]
        if args.only in (None, "sqlite"):
            for front in fronts:
                url = f"sqlite:///{tmp / f'bench-{front}.db'}"
                results += bench_database(wrk, "sqlite", url, cert, args, tmp, front, argon2_rates, notes)
            if not args.no_scaling:
                results += bench_scaling(wrk, "sqlite", f"sqlite:///{tmp / 'bench-1-worker.db'}", cert, args, tmp)
        if args.only in (None, "postgresql"):
            for front in fronts:
                with scratch_postgres() as url:
                    results += bench_database(wrk, "postgresql", url, cert, args, tmp, front, argon2_rates, notes)
            if not args.no_scaling:
                with scratch_postgres() as url:
                    results += bench_scaling(wrk, "postgresql", url, cert, args, tmp)
        if not args.no_tls_check:
            results += bench_stock(wrk, f"sqlite:///{tmp / 'stock.db'}", cert, tmp, args)
        if not args.no_ralph:
            results += bench_ralph(wrk, cert, tmp, args)
        for log in [*tmp.glob("gunicorn-*.log"), *tmp.glob("front-*/gunicorn.log"), *tmp.glob("front-*/error.log")]:
            if log.stat().st_size:
                shutil.copy(log, RESULTS / (log.name if log.parent == tmp else f"{log.parent.name}-{log.name}"))
    text = report(results, hash_cpu, bound, args, started, time.monotonic() - t0, argon2_rates, notes)
    print("\n" + text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-{args.label}" if args.label else ""
    (RESULTS / f"ingest-{stamp}{suffix}.md").write_text(text + "\n")
    (RESULTS / f"ingest-{stamp}{suffix}.json").write_text(json.dumps({
        "started": started, "argv": sys.argv[1:], "argon2_cpu_seconds": hash_cpu, "argon2_bound": bound,
        "argon2_parallel_rates": argon2_rates,
        "results": [{**r.__dict__, "rate": r.rate} for r in results],
    }, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}/ingest-{stamp}{suffix}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
