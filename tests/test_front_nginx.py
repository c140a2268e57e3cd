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

# one_database: nginx in front of gunicorn.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database]


@pytest.fixture
def front(database_url, tls_ca, tmp_path, app):
    require(NGINX is not None, "nginx is not installed (apt-get install -y nginx)")
    # One worker (of 16 threads) behind nginx: a second would only add its start-up (~1.5 s of CPU) to each test.
    upstream = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env={
        "PLAIN_HTTP": "1", "TRUSTED_PROXIES": "1", "BEACON_RATE_LIMIT": "5/minute", "WEB_CONCURRENCY": "1"})
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
    assert figures["health_ok"] == figures["health_answers"] >= 10, figures["failures"]


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


def test_no_query_string_reaches_either_access_log(front, tls_ca):
    """A remote cmi5 launch carries the learner's actor in its query (and a same-origin Referer may too):
    nginx's and gunicorn's access logs keep the path alone."""
    secret = "actor=%7B%22account%22%3A%7B%22name%22%3A%22jane-0042%22%7D%7D"
    answer = requests.get(f"{front.url}/healthz?{secret}", verify=tls_ca["ca"], timeout=10,
                          headers={"Referer": f"{front.url}/somewhere/page.html?{secret}"})
    assert answer.status_code == 200
    front.stop()  # its log is complete
    front.upstream.stop()
    for log in (front.folder / "access.log", front.upstream.log_path):
        text = log.read_text()
        assert "GET /healthz HTTP/" in text, log
        assert "jane-0042" not in text and "actor" not in text, log
    assert f'"{front.url}/somewhere/page.html"' in (front.folder / "access.log").read_text()  # Referer's path


@pytest.fixture
def front_with_content_port(database_url, tls_ca, tmp_path, app):
    """nginx on a non-default port, with CONTENT_URL the same port on another host name."""
    require(NGINX is not None, "nginx is not installed (apt-get install -y nginx)")
    upstream = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env={
        "PLAIN_HTTP": "1", "TRUSTED_PROXIES": "1", "WEB_CONCURRENCY": "1"})
    upstream.extra_env["BIND"] = f"127.0.0.1:{upstream.port}"
    upstream.url = f"http://127.0.0.1:{upstream.port}"
    folder = tmp_path / "nginx"
    folder.mkdir()
    proxy = Nginx(folder, tls_ca["cert"], tls_ca["key"], upstream.port)
    upstream.extra_env.update({"PUBLIC_URL": f"https://127.0.0.1:{proxy.port}",
                               "CONTENT_URL": f"https://localhost:{proxy.port}"})
    upstream.start()
    proxy.start()
    proxy.upstream = upstream
    yield proxy
    proxy.stop()
    upstream.stop()


def test_a_content_origin_on_a_non_default_port_is_told_apart(front_with_content_port, tls_ca):
    """The app sees host:port as the browser sent it (HTTP/1.1 Host, HTTP/2 :authority), so the content
    origin serves no app page and sets no cookie, while the app origin on the same port does."""
    port = front_with_content_port.port
    for http2 in (False, True):
        app_side = _get(f"127.0.0.1:{port}", "/login", tls_ca, port, http2)
        content_side = _get(f"localhost:{port}", "/login", tls_ca, port, http2)
        assert app_side[0] == 200 and "set-cookie" in app_side[1], http2
        assert content_side[0] == 404 and "set-cookie" not in content_side[1], http2
        assert b'name="password"' not in content_side[2], http2


def _get(authority: str, path: str, tls_ca, port: int, http2: bool) -> tuple[int, dict, bytes]:
    """One GET through nginx naming ``authority`` (curl: HTTP/1.1 Host, or HTTP/2 :authority)."""
    import subprocess

    host = authority.split(":")[0]
    done = subprocess.run(["curl", "-s", "-i", "--http2" if http2 else "--http1.1", "--cacert", tls_ca["ca"],
                           "--resolve", f"{host}:{port}:127.0.0.1", f"https://{authority}{path}"],
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
    return status, headers, body
