"""The `make run` set-up (gunicorn facing browsers over TLS, gunicorn.conf.py as shipped):
idle and slow clients do not stop it, TLS 1.2 offers no CBC suite, and a kill -9 of the
master leaves no orphan worker holding the port.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time

import pytest
import requests
from conftest import ROOT, LiveServer
from slow_clients import hold_idle_and_slow

# one_database: gunicorn's front: idle clients, TLS suites, signals.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database]


def test_200_idle_and_20_slow_clients_do_not_stop_healthz(live_server, tls_ca):
    figures = hold_idle_and_slow("127.0.0.1", live_server.port, tls=True, ca=tls_ca["ca"],
                                 health_url=live_server.url + "/healthz", idle=200, slow=20, seconds=20)
    print("direct gunicorn:", figures)
    assert figures["opened"] == 220
    # Every probe answered 200 while 220 connections were held (sync workers answered 0 of 7).
    assert figures["health_ok"] == figures["health_answers"] >= 10, figures["failures"]


def test_slow_bodies_that_fill_every_thread_are_cut_and_healthz_answers(database_url, tls_ca, tmp_path, app):
    """All slow clients on one worker, more of them than it has threads, on purpose: the requests
    it accepted besides (the /healthz probes) wait only until the read deadline cuts the slow ones.
    Without the deadline they waited as long as the slow clients pleased (a probe timed out).
    Handshakes that stop half-way hold a thread each too, until the same deadline."""
    server = LiveServer(database_url, tls_ca, tmp_path / "slow.log", extra_env={
        "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4", "REQUEST_READ_TIMEOUT": "3"}).start()
    stalled = []
    try:
        for _ in range(4):  # a TLS record header announcing a ClientHello, then nothing
            stalled.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            stalled[-1].sendall(b"\x16\x03\x01\x02\x00")
        figures = hold_idle_and_slow("127.0.0.1", server.port, tls=True, ca=tls_ca["ca"],
                                     health_url=server.url + "/healthz", idle=20, slow=6, seconds=10)
        # Each stalled handshake was closed by the server (at its end: EOF, or a reset).
        closed = sum(_closed_by_server(sock) for sock in stalled)
        # A steady upload slower than the timeout but faster than 500 bytes a second is not cut:
        # the whole JSON object arrives (a cut one is "not JSON").
        steady = _trickled_beacon(server.port, tls_ca["ca"], size=3000, chunk=600, pause=1.0)
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
    print("one worker, 4 threads:", figures)
    assert figures["health_ok"] == figures["health_answers"] >= 10, figures["failures"]
    assert figures["slow_cut"] == 6
    assert closed == 4
    assert "did not arrive within 3 s" in server.log_path.read_text()
    assert steady.startswith(b"HTTP/1.1 400 "), steady[:300]  # a JSON object, but no beacon
    assert b"invalid fields" in steady and b"not JSON" not in steady, steady[-300:]


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _trickled_beacon(port: int, ca: str, *, size: int, chunk: int, pause: float) -> bytes:
    """POST a JSON object of `size` bytes, `chunk` bytes every `pause` seconds; the server's answer."""
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall((f"POST /api/v1/beacons HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                          f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode())
            body = b'{"pad": "' + b"x" * (size - 11) + b'"}'
            for start in range(0, size, chunk):
                time.sleep(pause)
                sock.sendall(body[start:start + chunk])
            answer = b""
            while data := sock.recv(65536):
                answer += data
            return answer


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA256", "AES128-SHA256",
                                    "ECDHE-RSA-AES256-SHA384"])
def test_tls12_refuses_cbc_suites(live_server, tls_ca, cipher):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(tls_ca["ca"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(sock, server_hostname="127.0.0.1").close()


def test_tls12_aead_suite_accepted(live_server, tls_ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(tls_ca["ca"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            name, version, _bits = tls.cipher()
    assert version == "TLSv1.2" and ("GCM" in name or "CHACHA20" in name)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return False


def test_kill_9_of_the_master_leaves_no_worker_on_the_port(database_url, tls_ca, tmp_path, app):
    server = LiveServer(database_url, tls_ca, tmp_path / "first.log").start()
    workers = _children(server.process.pid)
    assert len(workers) == 2
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(5)
    server.log.close()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "orphaned workers outlived their master"
    # The same port binds again at once: a restart works.
    again = LiveServer(database_url, tls_ca, tmp_path / "second.log")
    again.port, again.url = server.port, server.url
    again.start()
    try:
        assert requests.get(again.url + "/healthz", verify=tls_ca["ca"], timeout=5).status_code == 200
    finally:
        again.stop()


def _load_worker_class():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf.PollFirstWorker


def test_the_quit_handler_never_waits_for_the_thread_pool():
    """The deadlock of CPython gh-121649, without luck: the quit signal lands while the worker's
    own thread is inside tpool.submit(), which holds the pool's shutdown lock. gthread's handler
    called tpool.shutdown() there and waited for that lock forever; ours only flags and wakes."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gunicorn.workers.gthread import PollableMethodQueue

    worker = _load_worker_class().__new__(_load_worker_class())
    worker.tpool = ThreadPoolExecutor(max_workers=1)
    worker.method_queue = PollableMethodQueue()
    worker.method_queue.init()
    worker.alive = True
    returned = threading.Event()
    with worker.tpool._shutdown_lock:  # as inside submit()
        handler = threading.Thread(target=lambda: (worker.handle_quit(signal.SIGQUIT, None), returned.set()),
                                   daemon=True)
        handler.start()
        handler.join(10)
        assert returned.is_set(), "the quit handler waited for the lock submit() holds: a deadlock"
    assert worker.alive is False and worker._quit_requested
    assert os.read(worker.method_queue.fileno(), 1)  # the poller is woken to quit at once
    worker.tpool.shutdown()
    worker.method_queue.close()


def test_every_quit_signal_ends_its_worker_while_requests_arrive(database_url, tls_ca, tmp_path, app):
    """Quit signals to a busy worker, one after another: each worker ends within a bound."""
    import threading

    server = LiveServer(database_url, tls_ca, tmp_path / "quit.log",
                        extra_env={"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4"}).start()
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                requests.get(server.url + "/healthz", verify=tls_ca["ca"], timeout=5)
            except requests.RequestException:
                pass

    senders = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        signalled: set[int] = set()
        for _round in range(8):
            deadline = time.monotonic() + 60

            def fresh() -> list[int]:  # the master lists an ended worker until it reaps it
                return [pid for pid in _children(server.process.pid) if pid not in signalled and _alive(pid)]

            while not (workers := fresh()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert workers, "the master started no new worker"
            worker = workers[0]
            signalled.add(worker)
            time.sleep(0.3)  # let requests flow into this worker
            os.kill(worker, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while _alive(worker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(worker), f"round {_round}: the worker ignored its quit signal for 30 s"
    finally:
        stop.set()
        for sender in senders:
            sender.join(10)
        server.stop()


def test_no_query_string_reaches_gunicorns_logs():
    """A remote cmi5 launch's query holds the learner's actor: the access log's request line, query,
    Referer and Location, and the error log's messages and tracebacks, keep paths only."""
    import datetime as dt
    import importlib.util
    import logging
    from types import SimpleNamespace

    from gunicorn.config import Config

    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(r)s %(q)s "%(f)s" %({location}o)s %({raw_uri}e)s %({query_string}e)s %(U)s')
    logger = conf.PathOnlyLogger(cfg)
    query = "endpoint=x&actor=%7B%22account%22%3A%7B%22name%22%3A%22jane-0042%22%7D%7D"
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/p/launch/0?{query}", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/p/launch/0", "QUERY_STRING": query, "HTTP_REFERER": f"https://c.example/p/a.html?{query}",
               "REMOTE_ADDR": "127.0.0.1"}
    response = SimpleNamespace(status="302 FOUND", sent=0, headers=[("Location", f"/p/v/index.html?{query}")])
    atoms = logger.atoms(response, SimpleNamespace(headers=[("Referer", environ["HTTP_REFERER"])]), environ,
                         dt.timedelta(seconds=0))
    line = cfg.access_log_format % logger.atoms_wrapper_class(atoms)
    assert "GET /p/launch/0 HTTP/1.1" in line and '"https://c.example/p/a.html"' in line
    assert "/p/v/index.html" in line and "jane" not in line and "actor" not in line, line

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(handler.format(record))
    logger.error_log.addHandler(handler)
    try:
        raise ValueError(f"bad answer for /p/launch/0?{query}")
    except ValueError:
        logger.exception("Error handling request %s", f"/p/launch/0?{query}")
    logger.warning(f"Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET /p/launch/0?{query}'")
    assert len(records) == 2 and "/p/launch/0" in records[0] and "ValueError: bad answer" in records[0]
    assert not any("jane" in r or "actor" in r for r in records), records
