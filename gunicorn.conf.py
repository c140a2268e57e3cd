"""gunicorn settings for both set-ups.

Direct (``make run``, the default): gunicorn terminates TLS itself on
https://127.0.0.1:8443 (PORT, HOST, CERT_FILE, KEY_FILE override) and faces
the browsers. Behind the proxy (``PLAIN_HTTP=1``, see deploy/): plain HTTP on
``BIND`` (default 127.0.0.1:8000; ``unix:/run/tracker/web.sock`` works too),
nginx terminates TLS and absorbs slow clients.

Worker model: gthread, WEB_CONCURRENCY processes of GUNICORN_THREADS threads.
A sync worker is held by one connection from accept to close, so a handful of
idle sockets stopped the server. Here (``PollFirstWorker`` below) a new
connection waits in the worker's poller, costing no thread, until its first
bytes arrive; a TLS connection goes back to the poller after its handshake
until its request starts, and kept-alive connections wait there between
requests. A thread is held only while a request is being read or answered,
so a slow body holds one thread, but not for long: a request must arrive
within REQUEST_READ_TIMEOUT seconds (default 10), plus one second for every
500 bytes received (Apache's mod_reqtimeout rule), else its connection is
closed; a TLS handshake must end within REQUEST_READ_TIMEOUT too. A
connection belongs to the worker that accepted it, so a worker whose threads
all hold slow bodies would otherwise keep the requests it accepted waiting for
as long as the slow clients please; with the read deadline they wait at most
that long. Behind nginx, which buffers every body, the deadline
never comes into play.

A quit signal (Ctrl+C of ``make run``, the master's death, a restart) always ends a
worker: gthread's own handler could deadlock on its thread pool's lock (CPython
gh-121649), ours defers the quit to the worker's loop.

The TLS context is built once per worker (``ssl_context`` below): gunicorn's
default builds one per connection, about 3 ms of CPU each, and browsers open
a new connection for most beacons.
"""

import ctypes
import logging
import multiprocessing
import os
import re
import selectors
import signal
import ssl
import sys
import time
from functools import partial
from pathlib import Path

from gunicorn.glogging import Logger
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker
from marshmallow import fields

_instance = Path(__file__).resolve().parent / "instance"
# The same truthy rule as app/config.py (environs, i.e. marshmallow's Boolean).
behind_proxy = os.environ.get("PLAIN_HTTP", "").strip() in fields.Boolean.truthy

if behind_proxy:
    bind = [os.environ.get("BIND") or "127.0.0.1:8000"]
else:
    bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8443')}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
threads = int(os.environ.get("GUNICORN_THREADS") or 16)
worker_connections = 1000
timeout = 30
graceful_timeout = 20
# Direct: how long an idle or kept-alive connection may wait for its (next) request.
# Behind nginx: longer than nginx's upstream keepalive_timeout (60 s), so nginx closes first.
keepalive = 75 if behind_proxy else 5
# Smaller than gunicorn's defaults (100 fields of 8 KiB): a beacon or a page needs far less.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
accesslog = os.environ.get("ACCESS_LOG", "-")
# Paths only (``PathOnlyLogger`` below): no query string, Referer query or Location query reaches the log.
errorlog = "-"
# gunicorn 27's runtime control socket is not used; several servers on one host would share its path.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info")
if not behind_proxy:
    certfile = os.environ.get("CERT_FILE") or str(_instance / "tls" / "cert.pem")
    keyfile = os.environ.get("KEY_FILE") or str(_instance / "tls" / "key.pem")

# TLS 1.2 offers only ECDHE key exchange with AEAD ciphers (no CBC, no RSA key
# exchange); TLS 1.3 suites are all AEAD and are not affected by this list.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
# How long a TLS connection may sit in a thread after its handshake before it goes back to the poller.
_REQUEST_START_WAIT = 0.2
# A request (head and body) must arrive within this many seconds, plus one per REQUEST_MIN_RATE bytes.
REQUEST_READ_TIMEOUT = float(os.environ.get("REQUEST_READ_TIMEOUT") or 10)
REQUEST_MIN_RATE = 500  # bytes a second


class _RequestClock:
    """The connection's socket as gunicorn's request parser reads it, with a deadline per request.

    A request (its head, then its body as the app reads it) must arrive within
    REQUEST_READ_TIMEOUT, and each REQUEST_MIN_RATE bytes received earn one more second: an
    upload at a modem's pace goes on, a body trickling a byte a second is cut after the timeout.
    Past the deadline the reads end as if the client had hung up (the parser drops a head, the
    app sees a body end early: a beacon cut short is not JSON, a 400) and the connection is closed.
    """

    def __init__(self, sock):
        self._sock = sock
        self.deadline = None
        self.expired = False

    def start(self):
        self.deadline = time.monotonic() + REQUEST_READ_TIMEOUT
        self.expired = False

    def recv(self, size):
        if self.expired:
            return b""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return self._expire()
        prior = self._sock.gettimeout()  # gunicorn's own drain of an unread body sets one too
        self._sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            if self.deadline - time.monotonic() > 0:
                raise  # the caller's own, shorter timeout
            return self._expire()
        finally:
            try:
                self._sock.settimeout(prior)
            except OSError:
                pass
        self.deadline += len(data) / REQUEST_MIN_RATE
        return data

    def _expire(self):
        self.expired = True
        logging.getLogger("gunicorn.error").info(
            "A request did not arrive within %.0f s (at %d bytes a second or faster): connection closed",
            REQUEST_READ_TIMEOUT, REQUEST_MIN_RATE)
        return b""

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _ClockedConn(TConn):
    """gthread's connection, its request parser reading through a _RequestClock."""

    clock = None

    def init(self):
        super().init()
        unreader = getattr(self.parser, "unreader", None)
        if self.clock is None and isinstance(unreader, SocketUnreader):
            self.clock = unreader.sock = _RequestClock(unreader.sock)
            self.clock.start()


class PollFirstWorker(ThreadWorker):
    """gthread, but no thread waits for a client that has not sent anything yet."""

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError:
            return  # another worker took it, or the client went away
        self.nr_conns += 1
        conn = _ClockedConn(self.cfg, client_sock, client_addr, listener.getsockname())
        self._wait_in_poller(conn)

    def _wait_in_poller(self, conn):
        # As gthread does for a deferred connection; murder_pending() closes it after `keepalive`.
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    # Quit (SIGQUIT, SIGINT): gthread shuts its thread pool down inside the signal handler. When
    # the signal lands while this same thread is in tpool.submit(), handing a request to the
    # pool, submit holds the pool's lock that shutdown() then waits for: the worker deadlocks
    # and keeps the port forever (CPython gh-121649). So the handler only sets a flag and wakes
    # the poller (SimpleQueue.put and os.write are safe there); the loop quits at once.
    _quit_requested = False

    def handle_quit(self, sig, frame):
        self._quit_requested = True
        self.alive = False
        self.method_queue.defer(_nothing)

    def wait_for_and_dispatch_events(self, timeout):
        if not self._quit_requested:
            super().wait_for_and_dispatch_events(timeout)
        if self._quit_requested:
            self._quit_now()

    def _quit_now(self):
        """What gthread's handle_quit did, outside the signal handler."""
        self.cfg.worker_int(self)
        self.tpool.shutdown(wait=False)
        time.sleep(0.1)
        sys.exit(0)

    def handle(self, conn):
        if conn.clock is not None:
            conn.clock.start()  # the next request on a kept-alive connection
        if self.cfg.is_ssl and not conn.initialized:
            try:
                conn.sock.setblocking(True)
                conn.init()  # the TLS handshake: the ClientHello is here already
            except (OSError, ValueError) as exc:
                self.log.debug("TLS handshake failed: %s", exc)
                return False
            if not conn.sock.pending() and not _readable(conn.sock, _REQUEST_START_WAIT):
                return _DEFER
        keepalive = super().handle(conn)
        return False if conn.clock is not None and conn.clock.expired else keepalive


def _nothing():
    pass


def _readable(sock, wait: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(wait))


class PathOnlyLogger(Logger):
    """The access log without any query string, whatever ``access_log_format`` asks for.

    A remote cmi5 course is launched by the LMS at ``CONTENT_URL/<package>/launch/<n>`` with its
    launch parameters in the query, the learner's ``actor`` (ID and name) among them, and the
    redirect to the course page carries them on (``Location``), as do same-origin ``Referer``
    headers. None of it may reach a log: the request line, ``%(q)s``, the Referer and the
    Location are logged without their query (and fragment), for every request. gunicorn's own
    error log names a request too (an invalid request line, "Error handling request <uri>"): its
    messages and tracebacks lose every query string as well.
    """

    def setup(self, cfg):
        super().setup(cfg)
        if not any(isinstance(f, _NoQueries) for f in self.error_log.filters):
            self.error_log.addFilter(_NoQueries())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = _path_only(environ.get("RAW_URI", ""))
        atoms["r"] = f"{environ['REQUEST_METHOD']} {path} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = ""
        atoms["f"] = _path_only(atoms.get("f", "-"))
        for name in list(atoms):
            if name.startswith("{") and name.endswith(("}i", "}o", "}e")):
                key = name[1:-2]
                if key in ("query_string", "raw_uri", "request_uri"):
                    atoms[name] = _path_only(str(atoms[name])) if key != "query_string" else ""
                elif key in ("referer", "location", "http_referer"):
                    atoms[name] = _path_only(str(atoms[name]))
        return atoms


def _path_only(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


class _NoQueries(logging.Filter):
    """An error-log record with every ``?query`` cut from its message and traceback."""

    _QUERY = re.compile(r"\?[^\s'\"]*")

    def filter(self, record):
        message, traceback = record.getMessage(), record.exc_info
        if traceback:
            message += "\n" + logging.Formatter().formatException(traceback)
            record.exc_info, record.exc_text = None, None
        if traceback or "?" in message:
            record.msg, record.args = self._QUERY.sub("", message), None
        return True


logger_class = PathOnlyLogger

# GUNICORN_WORKER_CLASS=sync is for comparisons only (bench/ingest.py --worker-class sync): idle clients hold it.
worker_class = "sync" if os.environ.get("GUNICORN_WORKER_CLASS") == "sync" else PollFirstWorker

_context = None


class _HandshakeDeadlineSocket(ssl.SSLSocket):
    """A TLS connection whose handshake must end within REQUEST_READ_TIMEOUT.

    The worker hands a connection to a thread when its first bytes arrive, and the handshake
    blocks that thread: a client that sends the start of a ClientHello and stops would hold it
    for good. CPython bounds the whole handshake by the socket's timeout; past it the connection
    is closed like a failed handshake.
    """

    def do_handshake(self, block=False):
        timeout = self.gettimeout()
        if timeout is None:
            self.settimeout(REQUEST_READ_TIMEOUT)
        try:
            super().do_handshake(block)
        finally:
            self.settimeout(timeout)


def ssl_context(conf, default_ssl_context_factory):
    """One TLS context per worker: TLS 1.2 at least, AEAD suites only, a bounded handshake."""
    global _context
    if _context is None:
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        context.sslsocket_class = _HandshakeDeadlineSocket
        _context = context
    return _context


_PR_SET_PDEATHSIG = 1


def post_fork(server, worker):
    """A worker dies with its master: after a kill -9 of the master no orphan keeps the port.

    SIGQUIT is gunicorn's quick shutdown: the orphan exits at once, so a restart can bind
    the port again (a graceful stop would hold it for up to graceful_timeout). A request
    in flight gets no answer, so its beacon was not acknowledged and the tracker retries it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: gthread still notices a changed parent within a second
        pass
    if os.getppid() != server.pid:  # the master died between fork and prctl
        os.kill(os.getpid(), signal.SIGQUIT)
