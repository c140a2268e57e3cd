"""GET /api/v1/clients/<slug>/usage: bearer tokens, scoping, dates, and the contract's shape."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from conftest import beacon_body

from app.extensions import db
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """Staff passwords are not what this module tests; production-cost Argon2 would dominate its time."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(staff_service, "password_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


def usage_url(slug: str, start: str = "2026-03-01", end: str = "2026-03-31") -> str:
    return f"/api/v1/clients/{slug}/usage?from={start}&to={end}"


def token_for(user) -> str:
    return staff_service.create_token(db.session, user, actor="test")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def send(client, key: str, when: str, **fields) -> None:
    with time_machine.travel(dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC), tick=False):
        assert client.post(BEACONS, json=beacon_body(key, **fields)).status_code == 204


@pytest.fixture
def acme(client, make_client):
    """A client with usage on the 1st, 2nd and 31st of March and 1st of April 2026."""
    acme, key = make_client(name="Acme Corp")
    send(client, key, "2026-02-28T23:59:59", student_id="early@example.com")
    send(client, key, "2026-03-01T00:00:00", student_id="jane@example.com", course="Fire Safety")
    send(client, key, "2026-03-01T12:00:00", student_id="JANE@example.com", course="Fire Safety")
    send(client, key, "2026-03-01T13:00:00", student_id="bob@example.com", course="Fire Safety")
    send(client, key, "2026-03-02T08:00:00", student_id="jane@example.com", course="Fire Safety")
    send(client, key, "2026-03-02T09:00:00", student_id="jane@example.com", course="Anti-Bribery")
    send(client, key, "2026-03-02T09:30:00", student_id="jane@example.com", course="Anti-Bribery", event="completed")
    send(client, key, "2026-03-31T23:59:59", student_id="carol@example.com", course="Anti-Bribery")
    send(client, key, "2026-04-01T00:00:00", student_id="late@example.com")
    return acme


def test_shape_and_figures_exactly_as_the_contract(client, make_staff, acme):
    token = token_for(make_staff("billing"))
    response = client.get(usage_url(acme.slug), headers=bearer(token))
    assert response.status_code == 200
    assert response.json == {
        "client": "acme-corp", "from": "2026-03-01", "to": "2026-03-31", "course": None,
        "unique_users": 3, "launches": 6, "completers": 1,
        # The 31 days before: 29 January to 28 February, whose last second had one launch.
        "previous": {"from": "2026-01-29", "to": "2026-02-28", "unique_users": 1, "launches": 1, "completers": 0},
        "courses": [
            {"course": "Anti-Bribery", "unique_users": 2, "launches": 2, "completers": 1, "days": [
                {"date": "2026-03-02", "unique_users": 1, "launches": 1},
                {"date": "2026-03-31", "unique_users": 1, "launches": 1},
            ]},
            {"course": "Fire Safety", "unique_users": 2, "launches": 4, "completers": 0, "days": [
                {"date": "2026-03-01", "unique_users": 2, "launches": 3},
                {"date": "2026-03-02", "unique_users": 1, "launches": 1},
            ]},
        ],
        # The test client sends no Origin and these beacons no package ID.
        "origins": [{"lms_host": None, "unique_users": 3, "launches": 6}],
        "packages": [{"package": None, "unique_users": 3, "launches": 6, "issued": None}],
        "seats": None,
        "held_back": {"beacons": 0, "launches": 0, "reasons": []},
    }


def test_boundaries_are_inclusive_utc_days(client, make_staff, acme):
    token = token_for(make_staff("admin"))
    one_day = client.get(usage_url(acme.slug, "2026-03-31", "2026-03-31"), headers=bearer(token)).json
    assert (one_day["unique_users"], one_day["launches"]) == (1, 1)
    first = client.get(usage_url(acme.slug, "2026-03-01", "2026-03-01"), headers=bearer(token)).json
    assert (first["unique_users"], first["launches"]) == (2, 3)
    feb = client.get(usage_url(acme.slug, "2026-02-28", "2026-02-28"), headers=bearer(token)).json
    assert feb["unique_users"] == 1 and feb["courses"][0]["days"][0]["date"] == "2026-02-28"
    everything = client.get(usage_url(acme.slug, "2026-01-01", "2026-12-31"), headers=bearer(token)).json
    assert (everything["unique_users"], everything["launches"]) == (5, 8)
    empty = client.get(usage_url(acme.slug, "2025-01-01", "2025-12-31"), headers=bearer(token)).json
    assert empty == {"client": "acme-corp", "from": "2025-01-01", "to": "2025-12-31", "course": None,
                     "unique_users": 0, "launches": 0, "completers": 0,
                     "previous": {"from": "2024-01-02", "to": "2024-12-31", "unique_users": 0, "launches": 0,
                                  "completers": 0},
                     "courses": [], "origins": [],
                     "packages": [], "seats": None,
                     "held_back": {"beacons": 0, "launches": 0, "reasons": []}}


@pytest.mark.parametrize("role", ["admin", "billing", "csm"])
def test_staff_roles_see_every_client(client, make_client, make_staff, acme, role):
    other, _ = make_client(name="Other Org")
    token = token_for(make_staff(role))
    assert client.get(usage_url(acme.slug), headers=bearer(token)).json["unique_users"] == 3
    assert client.get(usage_url(other.slug), headers=bearer(token)).status_code == 200


def test_client_token_sees_only_its_own(client, make_client, make_staff, acme):
    other, _ = make_client(name="Other Org")
    token = token_for(make_staff("client", client=acme))
    assert client.get(usage_url(acme.slug), headers=bearer(token)).json["unique_users"] == 3
    hidden = client.get(usage_url(other.slug), headers=bearer(token))
    missing = client.get(usage_url("no-such-client"), headers=bearer(token))
    # Another client's usage looks exactly like a client that does not exist.
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json == missing.json
    other_token = token_for(make_staff("client", client=other))
    assert client.get(usage_url(other.slug), headers=bearer(other_token)).json["unique_users"] == 0
    assert client.get(usage_url(acme.slug), headers=bearer(other_token)).status_code == 404


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer tk_wrong"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "tk_no_scheme"},
], ids=["none", "empty", "blank", "wrong", "basic", "no-scheme"])
def test_missing_or_bad_token_is_401(client, make_staff, acme, headers):
    token_for(make_staff("admin"))
    response = client.get(usage_url(acme.slug), headers=headers)
    assert response.status_code == 401
    assert response.json["error"]
    assert "unique_users" not in response.json


def test_401_even_for_a_client_that_does_not_exist(client):
    assert client.get(usage_url("no-such-client")).status_code == 401


def test_revoked_token_and_inactive_user_are_401(client, make_staff, acme):
    from app.models import ApiToken, utcnow

    user = make_staff("billing")
    token = token_for(user)
    assert client.get(usage_url(acme.slug), headers=bearer(token)).status_code == 200
    user.active = False
    db.session.commit()
    assert client.get(usage_url(acme.slug), headers=bearer(token)).status_code == 401
    user.active = True
    for row in db.session.query(ApiToken).all():
        row.revoked_at = utcnow()
    db.session.commit()
    assert client.get(usage_url(acme.slug), headers=bearer(token)).status_code == 401


def test_token_is_not_a_cookie_credential(client, make_staff, login, acme):
    """A signed-in browser session is not a bearer token: the JSON API still wants the token."""
    user = make_staff("admin")
    login(user)
    assert client.get(usage_url(acme.slug)).status_code == 401


@pytest.mark.parametrize("query", [
    "", "from=2026-03-01", "to=2026-03-31", "from=2026-3-1&to=2026-03-31", "from=01/03/2026&to=2026-03-31",
    "from=2026-03-01&to=2026-02-30", "from=2026-03-31&to=2026-03-01", "from=yesterday&to=today",
    "from=2026-03-01T00:00:00&to=2026-03-31", "from=&to=", "from=0000-00-00&to=2026-03-31",
    "from=2000-01-01&to=2026-03-31", "from=2026-03-01&to=2026-03-31%00",
], ids=["none", "no-to", "no-from", "short", "dmy", "feb-30", "from-after-to", "words", "datetime", "empty",
        "zeros", "over-ten-years", "nul"])
def test_bad_dates_are_400(client, make_staff, acme, query):
    token = token_for(make_staff("admin"))
    response = client.get(f"/api/v1/clients/{acme.slug}/usage?{query}", headers=bearer(token))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_query"
    assert response.json["fields"]


def test_from_after_to_names_the_field(client, make_staff, acme):
    token = token_for(make_staff("admin"))
    response = client.get(usage_url(acme.slug, "2026-03-31", "2026-03-01"), headers=bearer(token))
    assert response.status_code == 400
    assert "from" in response.json["fields"]


def test_anonymised_client_usage_counts_pseudonyms(client, make_client, make_staff):
    acme, key = make_client(name="Anon Org", anonymised=True)
    send(client, key, "2026-03-05T10:00:00", student_id="Jane@Example.com")
    send(client, key, "2026-03-05T11:00:00", student_id=" jane@example.COM")
    send(client, key, "2026-03-06T11:00:00", student_id="bob@example.com")
    token = token_for(make_staff("billing"))
    body = client.get(usage_url(acme.slug), headers=bearer(token)).json
    assert (body["unique_users"], body["launches"]) == (2, 3)
    assert [d["unique_users"] for d in body["courses"][0]["days"]] == [1, 1]
    assert "jane" not in str(body).lower()
