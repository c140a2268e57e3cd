"""The production front: real nginx (deploy/nginx/tracker.conf as shipped, only ports and
paths changed) in front of real gunicorn (PLAIN_HTTP=1, TRUSTED_PROXIES=1).
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import requests
from conftest import LiveServer, beacon_body, require
from nginx_front import NGINX, Nginx
from slow_clients import hold_idle_and_slow
from sqlalchemy import func, select

from app.extensions import db
from app.models import Event

pytestmark = pytest.mark.e2e


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
    proxy = Nginx(folder, tls_ca["cert"], tls_ca["key"], upstream.port).start()
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
