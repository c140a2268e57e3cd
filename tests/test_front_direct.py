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
from conftest import LiveServer
from slow_clients import hold_idle_and_slow

pytestmark = pytest.mark.e2e


def test_200_idle_and_20_slow_clients_do_not_stop_healthz(live_server, tls_ca):
    figures = hold_idle_and_slow("127.0.0.1", live_server.port, tls=True, ca=tls_ca["ca"],
                                 health_url=live_server.url + "/healthz", idle=200, slow=20, seconds=20)
    print("direct gunicorn:", figures)
    assert figures["opened"] == 220
    # Every probe answered 200 while 220 connections were held (sync workers answered 0 of 7).
    assert figures["health_ok"] == figures["health_answers"] >= 10


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
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
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
