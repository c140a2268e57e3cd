"""Idle and slow clients held against a server while /healthz must keep answering."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import requests


def hold_idle_and_slow(host: str, port: int, *, tls: bool, health_url: str, ca: str | bool,
                       idle: int = 200, slow: int = 20, seconds: float = 20) -> dict:
    """Open `idle` connections that send nothing (half of them finish a TLS handshake first when
    `tls`) and `slow` requests whose body trickles in; meanwhile GET /healthz once a second.

    Returns the counts: connections opened, health answers and how many were 200, and how many
    slow clients the server (or proxy) hung up on.
    """
    stop = threading.Event()
    sockets: list[socket.socket] = []
    context = ssl.create_default_context(cafile=ca) if tls and isinstance(ca, str) else None

    def connect(handshake: bool) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=10)
        if handshake and context is not None:
            sock = context.wrap_socket(sock, server_hostname=host)
        return sock

    for i in range(idle):
        sockets.append(connect(handshake=tls and i % 2 == 0))

    cut: list[socket.socket] = []

    def trickle(sock: socket.socket) -> None:
        head = (f"POST /api/v1/beacons HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
                "Content-Length: 4000\r\n\r\n").encode()
        try:
            sock.sendall(head)
            while not stop.wait(1):
                sock.sendall(b" ")
        except OSError:
            cut.append(sock)  # the server (or proxy) gave up on this client: that is allowed

    slow_socks = [connect(handshake=True) for _ in range(slow)]
    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in slow_socks]
    for thread in threads:
        thread.start()
    answers, ok, failures = 0, 0, []
    deadline = time.monotonic() + seconds
    try:
        # At least 10 probes, over `seconds` at least: a probe of a loaded machine may be slow, so
        # each waits 30 s before it counts as unanswered (a stopped server answers none).
        while time.monotonic() < deadline or answers < 10:
            try:
                answer = requests.get(health_url, verify=ca, timeout=30)
                answers += 1
                ok += answer.status_code == 200
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:120]}")
            except requests.RequestException as exc:
                answers += 1
                failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for sock in sockets + slow_socks:
            sock.close()
    # What each probe that was not a 200 got, so a failure says why (a 503, a timeout, a reset).
    return {"opened": len(sockets) + len(slow_socks), "health_answers": answers, "health_ok": ok,
            "failures": failures, "slow_cut": len(cut)}
