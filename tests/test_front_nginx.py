"""The production front: real nginx (deploy/nginx/tracker.conf as shipped, only ports and
paths changed) in front of real gunicorn (PLAIN_HTTP=1, TRUSTED_PROXIES=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, LiveServer, beacon_body, free_port, require
from slow_clients import hold_idle_and_slow
from sqlalchemy import func, select

from app.extensions import db
from app.models import Event

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class Nginx:
    def __init__(self, folder: Path, tls: dict, upstream_port: int):
        self.folder, self.port, self.http_port = folder, free_port(), free_port()
        site = (ROOT / "deploy" / "nginx" / "tracker.conf").read_text()
        site = re.sub(r"^\s*listen \[::\]:.*$", "", site, flags=re.M)
        site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{self.port} ssl")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
        site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
        site = site.replace("/etc/tracker/tls/cert.pem", tls["cert"]).replace("/etc/tracker/tls/key.pem", tls["key"])
        (folder / "tracker.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log {folder}/access.log;
{temp}
    include {folder}/tracker.conf;
}}
""")
        self.url = f"https://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        check = subprocess.run([NGINX, "-t", "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"),
                                         "-g", "daemon off;"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start: " + (self.folder / "error.log").read_text())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process.stderr.close()


@pytest.fixture
def front(database_url, tls_ca, tmp_path, app):
    require(NGINX is not None, "nginx is not installed (apt-get install -y nginx)")
    upstream = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env={
        "PLAIN_HTTP": "1", "TRUSTED_PROXIES": "1", "BEACON_RATE_LIMIT": "5/minute"})
    upstream.extra_env["BIND"] = f"127.0.0.1:{upstream.port}"
    upstream.url = f"http://127.0.0.1:{upstream.port}"
    upstream.start()
    folder = tmp_path / "nginx"
    folder.mkdir()
    proxy = Nginx(folder, tls_ca, upstream.port).start()
    proxy.upstream = upstream
    yield proxy
    proxy.stop()
    upstream.stop()


def test_idle_and_slow_clients_are_absorbed_by_nginx(front, tls_ca):
    figures = hold_idle_and_slow("127.0.0.1", front.port, tls=True, ca=tls_ca["ca"],
                                 health_url=front.url + "/healthz", idle=200, slow=20, seconds=20)
    print("through nginx:", figures)
    assert figures["opened"] == 220
    assert figures["health_ok"] == figures["health_answers"] >= 10


def test_oversize_header_and_body_are_refused_by_nginx(front, tls_ca):
    big_header = requests.get(front.url + "/healthz", headers={"X-Padding": "a" * 12_000},
                              verify=tls_ca["ca"], timeout=10)
    assert big_header.status_code in (400, 494)
    assert "nginx" in big_header.text
    big_body = requests.post(front.url + "/api/v1/beacons", data=b"x" * 40_000,
                             headers={"Content-Type": "text/plain"}, verify=tls_ca["ca"], timeout=10)
    assert big_body.status_code == 413
    assert "nginx" in big_body.text
    # Neither reached gunicorn.
    assert "/api/v1/beacons" not in front.upstream.log_path.read_text()


def test_a_beacon_and_a_page_end_to_end_over_http2_and_tls(front, make_client, tls_ca):
    lms = "https://lms.acme.example"
    _client, key = make_client(name="Acme", origins=[lms])
    beacon = requests.post(front.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                           headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": lms},
                           verify=tls_ca["ca"], timeout=10)
    assert beacon.status_code == 204
    assert beacon.headers["Access-Control-Allow-Origin"] == lms
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1
    page = requests.get(front.url + "/login", verify=tls_ca["ca"], timeout=10)
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src" in page.headers["Content-Security-Policy"]
    # Secure cookies: the app knows the request came over HTTPS (X-Forwarded-Proto).
    assert "Secure" in page.headers.get("Set-Cookie", "")

    # HTTP/2 offered to browsers; TLS 1.2 without CBC; sessions resumed.
    context = ssl.create_default_context(cafile=tls_ca["ca"])
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
    cbc = ssl.create_default_context(cafile=tls_ca["ca"])
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:AES128-SHA256")
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError):
            cbc.wrap_socket(sock, server_hostname="127.0.0.1").close()
    tls12 = ssl.create_default_context(cafile=tls_ca["ca"])
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        with tls12.wrap_socket(sock, server_hostname="127.0.0.1") as first:
            session = first.session
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        with tls12.wrap_socket(sock, server_hostname="127.0.0.1", session=session) as second:
            assert second.session_reused


def test_the_app_sees_the_real_client_address_not_a_forged_one(front, make_client, tls_ca):
    """BEACON_RATE_LIMIT is 5/minute per client address. Six beacons each claiming another
    X-Forwarded-For still come from one address: nginx replaces the header, so the sixth is 429.
    """
    _client, key = make_client(name="Acme")
    answers = []
    for n in range(6):
        answers.append(requests.post(front.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                                     headers={"Content-Type": "text/plain", "X-Forwarded-For": f"203.0.113.{n}"},
                                     verify=tls_ca["ca"], timeout=10).status_code)
    assert answers.count(204) == 5 and answers.count(429) == 1, answers
    # Control: straight to gunicorn (which trusts one proxy), the forged header would have been believed.
    direct = requests.post(front.upstream.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                           headers={"Content-Type": "text/plain", "X-Forwarded-For": "203.0.113.99"}, timeout=10)
    assert direct.status_code == 204
