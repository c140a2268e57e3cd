"""/healthz (200, or 503 when the database does not answer) and /api/openapi.json from the marshmallow schemas."""

from __future__ import annotations

import pytest
from conftest import HttpsClient, _config, beacon_body

from app import create_app
from app.billing.schemas import UsageSchema
from app.extensions import db
from app.ingest.schemas import BeaconSchema


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "rate_limits": "ok"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def unreachable_app(tmp_path):
    """An app whose SQLite file cannot be opened (its folder does not exist)."""
    application = create_app(_config(f"sqlite:///{tmp_path / 'missing-folder' / 'tracker.db'}"))
    application.test_client_class = HttpsClient
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


def test_unreachable_database_gives_503_with_retry_after_never_500(unreachable_app):
    client = unreachable_app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["status"] == "unavailable"
    assert int(health.headers["Retry-After"]) > 0

    beacon = client.post("/api/v1/beacons", json=beacon_body("ck_some-key"))
    assert beacon.status_code == 503
    assert beacon.json["error"] == "unavailable"
    assert int(beacon.headers["Retry-After"]) > 0

    preflight = client.options("/api/v1/beacons", headers={"Origin": "https://lms.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 503

    usage = client.get("/api/v1/clients/acme/usage?from=2026-01-01&to=2026-01-31",
                       headers={"Authorization": "Bearer tk_x"})
    assert usage.status_code == 503 and "Retry-After" in usage.headers

    # Malformed input is still refused for what it is, without touching storage.
    assert client.post("/api/v1/beacons", data="{", content_type="text/plain").status_code == 400


@pytest.fixture
def spec(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.json


def test_openapi_describes_the_contract(spec):
    assert spec["openapi"].startswith("3.")
    beacons = spec["paths"]["/api/v1/beacons"]
    assert set(beacons["post"]["responses"]) == {"204", "400", "403", "413", "415", "429", "503"}
    assert set(beacons["post"]["requestBody"]["content"]) == {"application/json", "text/plain"}
    assert "options" in beacons
    for code in ("429", "503"):
        assert "Retry-After" in beacons["post"]["responses"][code]["headers"]

    usage = spec["paths"]["/api/v1/clients/{slug}/usage"]["get"]
    assert set(usage["responses"]) >= {"200", "400", "401", "404"}
    assert usage["security"] == [{"bearer": []}]
    query = {p["name"]: p for p in usage["parameters"] if p["in"] == "query"}
    assert set(query) == {"from", "to", "course"} and query["from"]["required"] and query["to"]["required"]
    assert not query["course"].get("required") and query["course"]["schema"]["type"] == "string"
    clients = spec["paths"]["/api/v1/clients"]["get"]
    assert set(clients["responses"]) >= {"200", "400", "401"} and clients["security"] == [{"bearer": []}]
    assert [p["name"] for p in clients["parameters"] if p["in"] == "query"] == ["on"]
    assert "/healthz" in spec["paths"]


def test_openapi_schemas_are_made_from_the_marshmallow_schemas(spec):
    schemas = spec["components"]["schemas"]
    beacon = schemas["Beacon"]
    assert set(beacon["properties"]) == set(BeaconSchema().fields)
    assert set(beacon["required"]) == {"key", "course", "student_id", "student_name"}
    assert beacon["properties"]["event"]["enum"] == ["launch", "completed", "passed", "failed"]
    assert beacon["properties"]["event_id"]["format"] == "uuid"
    assert beacon["properties"]["key"]["maxLength"] == 100
    assert all(beacon["properties"][name]["type"] == "string" for name in ("key", "course", "student_id", "package"))

    usage = schemas["Usage"]
    assert set(usage["properties"]) == {"client", "from", "to", "course", "unique_users", "launches", "completers",
                                        "previous", "courses", "origins", "packages", "seats", "held_back"}
    assert {f.data_key or name for name, f in UsageSchema().fields.items()} == set(usage["properties"])
    course = schemas[usage["properties"]["courses"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(course["properties"]) == {"course", "unique_users", "launches", "completers", "days"}
    day = schemas[course["properties"]["days"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(day["properties"]) == {"date", "unique_users", "launches"}
    previous_ref = usage["properties"]["previous"]
    previous_ref = previous_ref["anyOf"][0]["$ref"]  # nullable: the schema or null
    previous = schemas[previous_ref.rsplit("/", 1)[-1]]
    assert set(previous["properties"]) == {"from", "to", "unique_users", "launches", "completers"}
    assert "previous range" in usage["properties"]["previous"]["description"]
    held_ref = usage["properties"]["held_back"]
    held_ref = held_ref.get("$ref") or held_ref["allOf"][0]["$ref"]  # a described $ref is wrapped in allOf
    held = schemas[held_ref.rsplit("/", 1)[-1]]
    assert set(held["properties"]) == {"beacons", "launches", "reasons"}
    assert schemas["Error"]["properties"].keys() >= {"error", "message", "fields"}
    listed = schemas["ClientList"]
    assert set(listed["properties"]) == {"on", "clients"}
    summary = schemas[listed["properties"]["clients"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(summary["properties"]) == {"slug", "name", "mode", "active", "term", "window_start", "window_end",
                                          "seat_limit", "seats_used", "overage", "billable_seats", "unique_users",
                                          "launches", "forecast"}
