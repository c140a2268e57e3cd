"""Malformed beacons: each gets its 4xx (never a 500) and stores nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import beacon_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from app.models import Course, DailyUsage, Event, Learner

URL = "/api/v1/beacons"
KEY = "@KEY@"  # replaced by the real client key in each test


def body(**fields) -> bytes:
    beacon = beacon_body(KEY)
    beacon.update(fields)
    return json.dumps({k: v for k, v in beacon.items() if v is not ...}).encode()


def raw(text: str) -> bytes:
    return text.encode("utf-8")


VALID = beacon_body(KEY, event_id="6f1c2c1e-0b7c-4b0e-9d7e-8d6f0c1a2b3c")
VALID_TEXT = json.dumps(VALID)

# (id, body bytes, content type, expected status)
CASES = [
    ("not-json", raw("hello"), "application/json", 400),
    ("empty-body", b"", "application/json", 400),
    ("truncated-json", raw(VALID_TEXT[:-5]), "application/json", 400),
    ("trailing-garbage", raw(VALID_TEXT + "x"), "application/json", 400),
    ("json-array", raw(json.dumps([VALID])), "application/json", 400),
    ("json-number", raw("42"), "application/json", 400),
    ("json-string", raw('"a beacon"'), "text/plain", 400),
    ("json-null", raw("null"), "application/json", 400),
    ("json-true", raw("true"), "application/json", 400),
    ("empty-object", raw("{}"), "application/json", 400),
    ("deep-nesting", raw('{"key": ' + "[" * 1500 + "]" * 1500 + "}"), "application/json", 400),
    ("deep-nesting-unbalanced", raw("[" * 3000), "text/plain", 400),
    ("nested-in-field", body(student_id={"id": {"deeper": ["x"]}}), "application/json", 400),
    ("huge-body", body(student_name="x" * 100_000), "application/json", 413),
    ("huge-whitespace", raw(VALID_TEXT + " " * 10_000), "text/plain", 413),
    ("lone-surrogate-id", raw(VALID_TEXT.replace('"s-1"', '"\\ud800"')), "application/json", 400),
    ("lone-surrogate-course", raw(VALID_TEXT.replace('"Anti-Bribery"', '"A\\ud83d"')), "application/json", 400),
    ("lone-surrogate-key", raw(VALID_TEXT.replace('"@KEY@"', '"ck_\\ud800"')), "application/json", 400),
    ("lone-surrogate-package", raw(VALID_TEXT[:-1] + ', "package": "p\\udc00"}'), "application/json", 400),
    ("nul-in-package", body(package="pkg\x00"), "application/json", 400),
    ("nul-in-key", body(key="ck_\x00"), "application/json", 400),
    ("invalid-utf8", VALID_TEXT.replace("s-1", "s-\xff").encode("latin-1"), "application/json", 400),
    ("invalid-utf8-overlong", VALID_TEXT.encode().replace(b"s-1", b"s-\xc0\xaf"), "application/json", 400),
    ("utf16-body", VALID_TEXT.encode("utf-16"), "application/json", 400),
    ("nul-in-id", body(student_id="s\x00-1"), "application/json", 400),
    ("newline-in-id", body(student_id="s-\n1"), "application/json", 400),
    ("escape-in-id", body(student_id="\x1b[2Js-1"), "application/json", 400),
    ("c1-control-in-id", body(student_id="s-1\x85x"), "application/json", 400),
    ("control-in-course", body(course="Fire\x00Safety"), "application/json", 400),
    ("empty-id", body(student_id=""), "application/json", 400),
    ("whitespace-id", body(student_id="   "), "application/json", 400),
    ("unicode-whitespace-id", body(student_id="\u00a0\u3000"), "application/json", 400),
    ("empty-course", body(course="  "), "application/json", 400),
    ("empty-key", body(key=""), "application/json", 400),
    ("over-long-id", body(student_id="x" * 256), "application/json", 400),
    ("over-long-course", body(course="x" * 301), "application/json", 400),
    ("over-long-key", body(key="k" * 101), "application/json", 400),
    ("over-long-package", body(package="p" * 65), "application/json", 400),
    ("unknown-key", body(colour="blue"), "application/json", 400),
    ("bad-event-kind", body(event="opened"), "application/json", 400),
    ("event-kind-case", body(event="LAUNCH"), "application/json", 400),
    ("bad-uuid", body(event_id="not-a-uuid"), "application/json", 400),
    ("uuid-too-long", body(event_id=str(uuid.uuid4()) + "0"), "application/json", 400),
    ("uuid-number", body(event_id=12345), "application/json", 400),
    ("bad-scorm-version", body(scorm_version="1.3"), "application/json", 400),
    ("missing-student-id", body(student_id=...), "application/json", 400),
    ("missing-name", body(student_name=...), "application/json", 400),
    ("missing-course", body(course=...), "application/json", 400),
    ("missing-key", body(key=...), "application/json", 400),
    ("nan-literal", raw(VALID_TEXT.replace('"s-1"', "NaN")), "application/json", 400),
    ("infinity-literal", raw(VALID_TEXT.replace('"Doe, Jane"', "Infinity")), "application/json", 400),
    ("neg-infinity-package", raw(VALID_TEXT[:-1] + ', "package": -Infinity}'), "application/json", 400),
    ("form-urlencoded", raw("key=x&course=y"), "application/x-www-form-urlencoded", 415),
    ("multipart", raw(VALID_TEXT), "multipart/form-data; boundary=x", 415),
    ("xml", raw("<beacon/>"), "application/xml", 415),
    ("text-html", raw(VALID_TEXT), "text/html", 415),
    ("no-content-type", raw(VALID_TEXT), None, 415),
]

# Wrong types for every field.
for field, values in {
    "key": [42, None, True, [], {}],
    "course": [42, None, False, ["Fire"], {"t": 1}],
    "student_id": [42, None, True, ["s-1"], {"id": "s-1"}, 1.5],
    "student_name": [42, None, True, ["Jane"], {}],
    "event": [1, True, ["launch"], {}],
    "event_id": [True, ["6f1c2c1e-0b7c-4b0e-9d7e-8d6f0c1a2b3c"], {}],
    "scorm_version": [1.2, 2004, True, []],
    "package": [1, True, [], {}],
}.items():
    for value in values:
        CASES.append((f"type-{field}-{type(value).__name__}", body(**{field: value}), "application/json", 400))


def stored_rows() -> int:
    db.session.rollback()
    return sum(db.session.scalar(select(func.count()).select_from(model))
               for model in (Event, Learner, DailyUsage, Course))


@pytest.fixture
def key(make_client):
    _, key = make_client()
    return key


@pytest.mark.parametrize("data, content_type, status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_beacon_gets_its_4xx_and_stores_nothing(client, key, data, content_type, status):
    data = data.replace(KEY.encode(), key.encode())
    headers = {} if content_type else {"Content-Type": ""}
    response = client.post(URL, data=data, content_type=content_type, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.json["error"]
    if status == 400:
        assert response.json["error"] == "invalid_beacon"
        assert isinstance(response.json["fields"], dict) and response.json["fields"]
    assert stored_rows() == 0


def test_at_least_twenty_cases():
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


def test_duplicate_keys_take_one_value_and_never_500(client, key):
    """Python's json keeps the last of duplicate keys; a beacon is either stored once or refused."""
    text = json.dumps(beacon_body(key))[:-1] + ', "student_id": "s-2"}'
    response = client.post(URL, data=text, content_type="application/json")
    assert response.status_code in (204, 400)
    db.session.rollback()
    if response.status_code == 204:
        assert list(db.session.scalars(select(Learner.identity))) == ["s-2"]
    else:
        assert stored_rows() == 0


def test_bom_prefixed_body_is_refused_cleanly(client, key):
    """A UTF-8 BOM is not JSON (RFC 8259 §8.1 says do not add one); we answer 400, never 500."""
    data = b"\xef\xbb\xbf" + json.dumps(beacon_body(key)).encode()
    response = client.post(URL, data=data, content_type="text/plain;charset=UTF-8")
    assert response.status_code == 400
    assert stored_rows() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(client, key, method):
    response = client.open(URL, method=method, data=json.dumps(beacon_body(key)), content_type="application/json")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json["error"]
    assert stored_rows() == 0


def test_charset_parameters_are_accepted(client, key):
    """The counterpart: real trackers send these, and they are stored."""
    for content_type in ("text/plain;charset=UTF-8", "application/json; charset=utf-8", "TEXT/PLAIN"):
        assert client.post(URL, data=json.dumps(beacon_body(key)), content_type=content_type).status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 3


def test_a_valid_beacon_built_like_the_cases_is_stored(client, key):
    """The cases above differ from a stored beacon only in what they break."""
    data = body().replace(KEY.encode(), key.encode())
    assert client.post(URL, data=data, content_type="application/json").status_code == 204
    assert client.post(URL, data=raw(VALID_TEXT).replace(KEY.encode(), key.encode()),
                       content_type="text/plain").status_code == 204
    assert stored_rows() > 0


# --- fuzzing: whatever arrives, never a 500 and nothing stored unless valid ---

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(
    st.sampled_from(["key", "course", "student_id", "student_name", "event", "event_id", "scorm_version",
                     "package", "other"]), _json_values, max_size=9))
def test_fuzzed_fields_never_500(client, key, fields):
    beacon = beacon_body(key)
    beacon.update(fields)
    response = client.post(URL, data=json.dumps(beacon), content_type="text/plain")
    assert response.status_code in (204, 400, 403, 413), response.get_data(as_text=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_never_500(client, key, data):
    response = client.post(URL, data=data, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert stored_rows() == 0


def test_size_limit_boundary(client, key, app):
    """A body of exactly BEACON_MAX_BYTES is read; one byte more is 413."""
    limit = app.config["BEACON_MAX_BYTES"]
    text = json.dumps(beacon_body(key))
    exact = text[:-1] + " " * (limit - len(text)) + "}"
    assert len(exact.encode()) == limit
    assert client.post(URL, data=exact, content_type="text/plain").status_code == 204
    over = text[:-1] + " " * (limit + 1 - len(text)) + "}"
    response = client.post(URL, data=over.replace(json.loads(text)["event_id"], str(uuid.uuid4())),
                           content_type="text/plain")
    assert response.status_code == 413
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1
