"""POST /api/v1/beacons answers exactly as the contract lists, and stores what it acknowledges."""

from __future__ import annotations

import json
import uuid

from conftest import TEST_PARAMS, HttpsClient, beacon_body, reset_database
from sqlalchemy import func, select

from app import create_app
from app.clients import services as client_service
from app.extensions import db
from app.models import DailyUsage, Event, Learner, RefusedOrigin

URL = "/api/v1/beacons"


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def test_json_beacon_is_stored_and_counted(client, make_client):
    _, key = make_client()
    response = client.post(URL, json=beacon_body(key))
    assert response.status_code == 204
    assert response.data == b""
    assert count(Event) == 1
    assert count(Learner) == 1
    usage = db.session.scalar(select(DailyUsage))
    assert usage.launches == 1


def test_text_plain_beacon_is_accepted(client, make_client):
    _, key = make_client()
    response = client.post(URL, data=json.dumps(beacon_body(key)), content_type="text/plain;charset=UTF-8")
    assert response.status_code == 204
    assert count(Event) == 1


def test_repeated_event_id_is_stored_once(client, make_client):
    _, key = make_client()
    body = beacon_body(key)
    assert client.post(URL, json=body).status_code == 204
    assert client.post(URL, json=body).status_code == 204
    assert count(Event) == 1
    assert db.session.scalar(select(DailyUsage.launches)) == 1


def test_second_launch_same_day_counts_one_user_two_launches(client, make_client):
    _, key = make_client()
    client.post(URL, json=beacon_body(key))
    client.post(URL, json=beacon_body(key))
    assert count(DailyUsage) == 1
    assert db.session.scalar(select(DailyUsage.launches)) == 2


def test_completion_event_is_recorded_without_a_launch(client, make_client):
    _, key = make_client()
    client.post(URL, json=beacon_body(key))
    assert client.post(URL, json=beacon_body(key, event="completed")).status_code == 204
    usage = db.session.scalar(select(DailyUsage))
    assert (usage.launches, usage.completions) == (1, 1)


def test_unknown_key_is_403(client, make_client):
    make_client()
    response = client.post(URL, json=beacon_body("ck_not-a-key"))
    assert response.status_code == 403
    assert response.json["error"] == "unknown_key"
    assert count(Event) == 0


def test_inactive_client_is_403(client, make_client, app):
    c, key = make_client()
    c.active = False
    db.session.commit()
    app.extensions["client_directory"].clear()
    response = client.post(URL, json=beacon_body(key))
    assert response.status_code == 403
    assert response.json["error"] == "unknown_key"
    assert count(Event) == 0


def test_perpetual_licence_is_untracked_403(client, make_client):
    _, key = make_client(licence="perpetual")
    response = client.post(URL, json=beacon_body(key))
    assert response.status_code == 403
    assert response.json["error"] == "untracked_licence"
    assert count(Event) == 0


def test_origin_allowed_exactly(client, make_client):
    _, key = make_client(origins=["https://lms.acme.example"])
    ok = client.post(URL, json=beacon_body(key), headers={"Origin": "https://lms.acme.example"})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://lms.acme.example"
    assert db.session.scalar(select(Event.lms_host)) == "lms.acme.example"


def test_a_remote_launch_is_recorded_with_the_lms_origin_it_names_and_checked_against_it(client, make_client, app):
    _, key = make_client(origins=["https://lms.acme.example"])
    content = app.config["CONTENT_URL"]  # a remote package's player sends from the content origin
    ok = client.post(URL, json=beacon_body(key, lms_origin="https://lms.acme.example"), headers={"Origin": content})
    assert ok.status_code == 204
    assert db.session.scalar(select(Event.lms_host)) == "lms.acme.example"  # the LMS, not the content host
    # An LMS the client does not allow is refused and listed, as if it had sent the beacon itself.
    refused = client.post(URL, json=beacon_body(key, lms_origin="https://lms.evil.example"),
                          headers={"Origin": content})
    assert refused.status_code == 403 and refused.json["error"] == "origin_not_allowed"
    assert db.session.scalar(select(RefusedOrigin.origin)) == "https://lms.evil.example"
    # From any other origin the field changes nothing: the browser's Origin is what counts.
    forged = client.post(URL, json=beacon_body(key, lms_origin="https://lms.acme.example"),
                         headers={"Origin": "https://lms.evil.example"})
    assert forged.status_code == 403
    # Not an origin: a clear 400, nothing stored.
    bad = client.post(URL, json=beacon_body(key, lms_origin="https://lms.acme.example/path"),
                      headers={"Origin": content})
    assert bad.status_code == 400 and "lms_origin" in bad.json["fields"]
    assert count(Event) == 1


def test_look_alike_and_null_origins_are_refused_and_listed(client, make_client):
    _, key = make_client(origins=["https://lms.acme.example"])
    for origin in ["https://lms.acme.example.evil.com", "http://lms.acme.example", "https://lms.acme.example:8443",
                   "null", "https://evil-lms.acme.example"]:
        response = client.post(URL, json=beacon_body(key), headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert response.json["error"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response.headers
    missing = client.post(URL, json=beacon_body(key))  # curl, a script: the 403 says what is missing
    assert missing.status_code == 403 and "no Origin header" in missing.json["message"]
    assert count(Event) == 0
    refused = {row.origin: row.count for row in db.session.scalars(select(RefusedOrigin))}
    assert refused["null"] == 1 and refused["https://lms.acme.example.evil.com"] == 1


def test_any_origin_when_none_configured(client, make_client):
    _, key = make_client()
    response = client.post(URL, json=beacon_body(key), headers={"Origin": "https://anything.example"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://anything.example"


def test_preflight_for_allowed_origin_only(client, make_client):
    make_client(origins=["https://lms.acme.example"])
    ok = client.options(URL, headers={"Origin": "https://lms.acme.example",
                                      "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://lms.acme.example"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    other = client.options(URL, headers={"Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_invalid_beacon_names_fields(client, make_client):
    _, key = make_client()
    response = client.post(URL, json={"key": key, "course": "", "student_id": 42})
    assert response.status_code == 400
    body = response.json
    assert body["error"] == "invalid_beacon"
    assert set(body["fields"]) >= {"course", "student_id", "student_name"}
    assert count(Event) == 0


def test_too_large_is_413(client, make_client):
    _, key = make_client()
    response = client.post(URL, json=beacon_body(key, student_name="x" * 5000))
    assert response.status_code == 413
    assert count(Event) == 0


def test_other_media_type_is_415(client, make_client):
    _, key = make_client()
    response = client.post(URL, data=json.dumps(beacon_body(key)), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert count(Event) == 0


def test_rate_limit_is_429_with_retry_after(app_config, make_client, database_url):
    from app import create_app

    config = dict(app_config, BEACON_RATE_LIMIT="3/minute")
    limited = create_app(config)
    with limited.app_context():
        _, key = make_client()
        test_client = limited.test_client()
        statuses = [test_client.post(URL, json=beacon_body(key)).status_code for _ in range(5)]
        assert statuses[:3] == [204, 204, 204]
        last = test_client.post(URL, json=beacon_body(key))
        assert last.status_code == 429
        assert int(last.headers["Retry-After"]) > 0
        assert last.json["error"] == "rate_limited"
        assert count(Event) == 3
        db.session.remove()
        db.engine.dispose()


def test_storage_down_is_503_with_retry_after(app, client, make_client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from app.ingest import batch as ingest_batch

    _, key = make_client()

    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ingest_batch, "_write_beacon", broken)
    response = client.post(URL, json=beacon_body(key))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json["error"] == "unavailable"


def test_every_response_has_hsts_and_nosniff(client, make_client):
    _, key = make_client()
    for response in (client.post(URL, json=beacon_body(key)), client.get("/healthz"), client.get("/login"),
                     client.get("/no-such-page")):
        assert "max-age" in response.headers["Strict-Transport-Security"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in client.get("/login").headers["Content-Security-Policy"]


def test_beacon_without_event_id_gets_one(client, make_client):
    _, key = make_client()
    body = beacon_body(key)
    del body["event_id"]
    assert client.post(URL, json=body).status_code == 204
    assert isinstance(db.session.scalar(select(Event.event_id)), uuid.UUID)


def test_a_process_caching_clients_for_0_s_follows_its_database_reset_under_it(app_config, database_url,
                                                                                _database_template):
    """CLIENT_CACHE_SECONDS=0, as the tests' shared live server runs while each test resets its database:
    a new client that reuses the old row IDs records a course title this process saw before, with the
    new course's ID (no course ID is kept from before; with a cache the insert broke its foreign key)."""
    process = create_app({**app_config, "CLIENT_CACHE_SECONDS": 0})
    process.test_client_class = HttpsClient
    with process.app_context():
        def send(key: str) -> int:
            return process.test_client().post(URL, json=beacon_body(key, course="Fire Safety")).status_code

        before, old_key = client_service.create_client(db.session, name="Before", actor="test", params=TEST_PARAMS)
        assert [send(old_key), send(old_key)] == [204, 204]  # the second one finds the course made by the first
        old_ids = (before.id, db.session.scalar(select(Event.course_id).limit(1)))
        db.session.remove()

        reset_database(database_url, _database_template)
        assert send(old_key) == 403
        after, key = client_service.create_client(db.session, name="After", actor="test", params=TEST_PARAMS)
        assert send(key) == 204
        stored = db.session.scalars(select(Event)).all()
        assert [(e.client_id, e.course_id) for e in stored] == [old_ids] and after.id == old_ids[0]
        db.session.remove()
        db.engine.dispose()
