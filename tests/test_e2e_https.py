"""End to end through a real gunicorn over HTTPS (trustme certificates): beacons, headers, TLS versions,
the usage API, /healthz, and 503 with Retry-After when the database is unreachable.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
import requests
from conftest import LiveServer, beacon_body, free_port, reset_database
from sqlalchemy import func, select

from app.extensions import db
from app.models import DailyUsage, Event
from app.staff import services as staff_service

# Old TLS versions are what these tests offer on purpose.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")]

LMS = "https://lms.acme.example"


def handshake(port: int, ca: str, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    # Let this client offer old versions at all (OpenSSL 3 refuses them at its default security level).
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version, context.maximum_version = minimum, maximum
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.version()


@pytest.mark.one_database  # no database at all
def test_this_client_can_speak_tls_1_1(tls_ca):
    """Control for the TLS test below: against a server that allows TLS 1.1 the handshake succeeds,
    so a refusal from gunicorn is the server's doing, not this client's."""
    import threading

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tls_ca["cert"], tls_ca["key"])
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_context.minimum_version = ssl.TLSVersion.TLSv1
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once():
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        assert handshake(port, tls_ca["ca"], ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    finally:
        thread.join(5)
        listener.close()


def test_beacon_usage_headers_and_tls_through_gunicorn(live_server, make_client, make_staff, tls_ca):
    ca = tls_ca["ca"]
    acme, key = make_client(name="Acme", origins=[LMS])

    # A tracker's beacon: text/plain JSON (no preflight), with the LMS's Origin.
    response = requests.post(live_server.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                             headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": LMS},
                             verify=ca, timeout=10)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == LMS
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1
    assert db.session.scalar(select(DailyUsage.launches)) == 1

    refused = requests.post(live_server.url + "/api/v1/beacons", data=json.dumps(beacon_body(key)),
                            headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
                            verify=ca, timeout=10)
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers

    preflight = requests.options(live_server.url + "/api/v1/beacons", verify=ca, timeout=10,
                                 headers={"Origin": LMS, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == LMS

    # A chunked body (no Content-Length) is held to the size limit too: a valid beacon padded past
    # the limit is refused, not cut at the limit and stored.
    def chunks():
        yield json.dumps(beacon_body(key, student_id="padded")).encode()
        for _ in range(8):
            yield b" " * 1024

    chunked = requests.post(live_server.url + "/api/v1/beacons", data=chunks(), verify=ca, timeout=10,
                            headers={"Content-Type": "text/plain", "Origin": LMS})
    assert chunked.status_code == 413, chunked.text
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1

    # Concurrent beacons across workers: a repeated event ID is stored once, distinct learners all count.
    from concurrent.futures import ThreadPoolExecutor

    repeated = beacon_body(key, student_id="twice@example.com")
    bodies = [repeated] * 8 + [beacon_body(key, student_id=f"learner-{n}") for n in range(16)]

    def post(body):
        return requests.post(live_server.url + "/api/v1/beacons", data=json.dumps(body), timeout=20,
                             headers={"Content-Type": "text/plain", "Origin": LMS}, verify=ca).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(post, bodies))
    assert statuses == [204] * len(bodies)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1 + 1 + 16
    assert db.session.scalar(select(func.count(func.distinct(DailyUsage.learner_id)))) == 1 + 1 + 16

    # The usage API with a bearer token.
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    usage = requests.get(f"{live_server.url}/api/v1/clients/{acme.slug}/usage?from={today}&to={today}",
                         headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=10)
    assert usage.status_code == 200
    assert (usage.json()["unique_users"], usage.json()["launches"]) == (18, 18)
    assert requests.get(f"{live_server.url}/api/v1/clients/{acme.slug}/usage?from={today}&to={today}",
                        verify=ca, timeout=10).status_code == 401

    health = requests.get(live_server.url + "/healthz", verify=ca, timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for page in (health, requests.get(live_server.url + "/login", verify=ca, timeout=10)):
        assert "max-age=" in page.headers["Strict-Transport-Security"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"

    # TLS 1.2 and 1.3 are accepted; 1.1 and 1.0 are refused by the server.
    assert handshake(live_server.port, ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(live_server.port, ca, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises(ssl.SSLError):
            handshake(live_server.port, ca, ssl.TLSVersion.TLSv1, old)
    # Plain HTTP on the HTTPS port gets no answer a browser could use.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{live_server.port}/healthz", timeout=5)

    live_server.stop()
    log = live_server.log_text()
    assert "Traceback" not in log and "unexpected error" not in log


def test_the_shared_server_follows_the_database_reset_each_next_test_gets(live_server, make_client, tls_ca,
                                                                          database_url, _database_template):
    """`live_server` is one gunicorn per xdist worker; each test resets its database under it. After
    the reset the server knows no client of the test before, and a new client that reuses the same
    row IDs records beacons of a course title the server saw before (no cached ID of the old rows;
    test_beacon.py checks that in one process, where no second worker can hide a stale cache)."""
    connection = requests.Session()  # kept alive: mostly one worker sees it all

    def send(key: str) -> int:
        return connection.post(live_server.url + "/api/v1/beacons", json=beacon_body(key, course="Fire Safety"),
                               verify=tls_ca["ca"], timeout=10).status_code

    before, old_key = make_client(name="Before")
    assert [send(old_key), send(old_key)] == [204, 204]
    old_ids = (before.id, db.session.scalar(select(Event.course_id)))

    db.session.remove()
    reset_database(database_url, _database_template)
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0
    assert send(old_key) == 403

    after, new_key = make_client(name="After")
    assert send(new_key) == 204
    stored = db.session.scalars(select(Event)).all()
    assert len(stored) == 1 and stored[0].client_id == after.id
    assert (after.id, stored[0].course_id) == old_ids  # the same IDs again: a cached course ID would fail
    connection.close()


class UnreachableDatabaseServer(LiveServer):
    """gunicorn whose DATABASE_URL names a PostgreSQL port where nothing listens."""

    ready_when_any_answer = True
    ready_timeout = 10.0


@pytest.mark.one_database  # the same unreachable PostgreSQL in either pass
def test_unreachable_database_gives_503_with_retry_after(tls_ca, tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/tracker"
    server = UnreachableDatabaseServer(url, tls_ca, tmp_path / "gunicorn.log",
                                       extra_env={"WEB_CONCURRENCY": "1"}).start()
    try:
        ca = tls_ca["ca"]
        health = requests.get(server.url + "/healthz", verify=ca, timeout=10)
        assert health.status_code == 503
        assert int(health.headers["Retry-After"]) > 0
        assert "max-age=" in health.headers["Strict-Transport-Security"]

        beacon = requests.post(server.url + "/api/v1/beacons", data=json.dumps(beacon_body("ck_any-key")),
                               headers={"Content-Type": "text/plain", "Origin": LMS}, verify=ca, timeout=10)
        assert beacon.status_code == 503
        assert int(beacon.headers["Retry-After"]) > 0
        assert beacon.json()["error"] == "unavailable"

        usage = requests.get(server.url + "/api/v1/clients/acme/usage?from=2026-01-01&to=2026-01-31",
                             headers={"Authorization": "Bearer tk_x"}, verify=ca, timeout=10)
        assert usage.status_code == 503
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log
    assert '" 500 ' not in log
