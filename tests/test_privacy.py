"""Personal data: for anonymised clients no plain student ID or name reaches a
table, the database file, a log line or an error answer; erasure works in both modes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, beacon_body
from sqlalchemy import func, inspect, select, text

from app.extensions import db
from app.models import DailyUsage, Event, Learner

URL = "/api/v1/beacons"
# Unusual enough never to appear by chance; the name and the IDs differ in case on purpose.
MARKER_IDS = ["Zq7Marker.Student@Example.ORG", "ZQ7-MARKER-ID-4411", "Zq7Ümlaut-Marker"]
MARKER_NAMES = ["Quixotic Zebulon-Marker", "Marker-Name Xylophage"]


def marker_forms() -> set[str]:
    forms = set()
    for marker in MARKER_IDS + MARKER_NAMES:
        forms |= {marker, marker.casefold(), marker.lower(), marker.upper()}
    # Distinctive fragments too, so a marker stored split or trimmed is still found.
    forms |= {"zq7marker", "ZQ7-MARKER", "Zebulon", "Xylophage", "Zq7Ümlaut".casefold()}
    return forms


def find_markers(haystack: str) -> set[str]:
    lowered = haystack.casefold()
    return {form for form in marker_forms() if form.casefold() in lowered}


def dump_database() -> str:
    """Every column of every row of every table, as text."""
    db.session.rollback()
    engine = db.engine
    chunks = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        value = bytes(value).decode("utf-8", "replace")
                    chunks.append(f"{table}: {value!r} {value}")
    return "\n".join(chunks)


def sqlite_file_bytes(database_url: str) -> bytes:
    path = Path(database_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def send_markers(post, key: str) -> list:
    """Valid beacons with the markers, then invalid ones that carry them too."""
    answers = []
    for student_id in MARKER_IDS:
        for name in MARKER_NAMES:
            # Same learner, sent differently (only e-mails are case-folded).
            variant = student_id.swapcase() if "@" in student_id else student_id
            for shown in (student_id, f"  {variant} "):
                answers.append(post(beacon_body(key, student_id=shown, student_name=name)))
    bad_bodies = [
        beacon_body(key, student_id=MARKER_IDS[0] + "\x00"),
        # Names are cleaned, never refused: these are refused for their IDs, and carry a name too.
        beacon_body(key, student_id=MARKER_IDS[1] + "\x00", student_name=MARKER_NAMES[0] + "\x07"),
        beacon_body(key, student_id=MARKER_IDS[1] * 20),
        beacon_body(key, student_id=" ", student_name=MARKER_NAMES[1] * 20),
        beacon_body(key, student_id=MARKER_IDS[0], event=MARKER_NAMES[0]),
        beacon_body(key, student_id=MARKER_IDS[0], event_id=MARKER_NAMES[0]),
        beacon_body(key, student_id=MARKER_IDS[0], scorm_version=MARKER_NAMES[1]),
        beacon_body(key, student_id=MARKER_IDS[0], package=MARKER_NAMES[1] * 5),
        beacon_body(key, student_id=[MARKER_IDS[0]]),
        beacon_body(key, student_id=MARKER_IDS[2], course=""),
        beacon_body(key, extra=MARKER_NAMES[0]),  # unknown field (its name is echoed, never its value)
        beacon_body("ck_" + MARKER_IDS[1], student_id=MARKER_IDS[0]),
    ]
    answers += [post(body) for body in bad_bodies]
    return answers


@pytest.fixture
def anonymised_key(make_client):
    _, key = make_client(anonymised=True)
    return key


def test_no_marker_reaches_tables_file_logs_or_errors(client, anonymised_key, database_kind, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    answers = send_markers(lambda body: client.post(URL, json=body), anonymised_key)
    statuses = [a.status_code for a in answers]
    assert statuses[:12] == [204] * 12
    assert all(400 <= s < 500 for s in statuses[12:]), statuses

    # Stored: the learners exist, under pseudonyms.
    db.session.rollback()
    identities = list(db.session.scalars(select(Learner.identity)))
    assert len(identities) == 3 and all(i.startswith("p:") for i in identities)
    assert db.session.scalar(select(func.count()).select_from(Event)) == 12

    assert find_markers(dump_database()) == set()
    if database_kind == "sqlite":
        raw = sqlite_file_bytes(database_url)
        assert len(raw) > 4096
        for form in marker_forms():
            assert form.encode("utf-8") not in raw, form
            assert form.encode("utf-16-le") not in raw, form

    for answer in answers:
        assert find_markers(answer.get_data(as_text=True)) == set(), answer.get_data(as_text=True)
    log_text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    # The capture really saw the beacon path (SQL statements, with parameters hidden).
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert find_markers(log_text) == set()


def test_verbatim_client_does_store_them(client, make_client):
    """The scan above would find the markers if they were stored (it is not blind)."""
    _, key = make_client()
    send_markers(lambda body: client.post(URL, json=body), key)
    found = find_markers(dump_database())
    assert MARKER_IDS[1] in found and MARKER_NAMES[0] in found


@pytest.fixture
def debug_live_server(app, database_url, tls_ca, tmp_path):
    """Like conftest's live_server, with gunicorn logging at debug level: the strictest log to scan."""
    server = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log", extra_env={"LOG_LEVEL": "debug"}).start()
    yield server
    server.stop()


@pytest.mark.e2e
def test_no_marker_in_the_gunicorn_log(debug_live_server, anonymised_key, tls_ca):
    live_server = debug_live_server
    session = requests.Session()

    def post(body):
        # verify per request: a REQUESTS_CA_BUNDLE in the environment would beat session.verify.
        return session.post(live_server.url + URL, data=json.dumps(body), timeout=10, verify=tls_ca["ca"],
                            headers={"Content-Type": "text/plain", "Origin": "https://lms.example"})

    answers = send_markers(post, anonymised_key)
    assert [a.status_code for a in answers[:12]] == [204] * 12
    assert all(400 <= a.status_code < 500 for a in answers[12:])
    for answer in answers:
        assert find_markers(answer.text) == set()
    live_server.stop()
    log_text = live_server.log_path.read_text(errors="replace")
    assert "POST /api/v1/beacons" in log_text  # the access log is there and was read
    assert "[DEBUG]" in log_text
    assert find_markers(log_text) == set()
    assert find_markers(dump_database()) == set()


# --- erasure -------------------------------------------------------------------


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_learner_erase_in_both_modes(client, runner, make_client, anonymised):
    acme, key = make_client(anonymised=anonymised)
    for course in ("Anti-Bribery", "Fire Safety"):
        for _ in range(2):
            assert client.post(URL, json=beacon_body(key, student_id="Jane.Doe@Example.com",
                                                     course=course)).status_code == 204
    assert client.post(URL, json=beacon_body(key, student_id="bob@example.com")).status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 2

    # Sent differently than at ingest: the same normalisation finds the learner.
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug,
                                 "--student-id", "  JANE.DOE@example.COM ", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"client": acme.slug, "erased": 1}

    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 1
    assert db.session.scalar(select(func.count()).select_from(Event)) == 1
    assert db.session.scalar(select(func.count()).select_from(DailyUsage)) == 1
    today = db.session.scalar(select(DailyUsage.day))
    from app.billing.figures import unique_users

    assert unique_users(db.session, acme.id, today, today) == 1

    again = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "jane.doe@example.com"])
    assert again.exit_code == 0 and "nothing erased" in again.output
    bad = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "  "])
    assert bad.exit_code != 0 and "empty" in bad.output
    unknown = runner.invoke(args=["learner", "erase", "--client", "no-such", "--student-id", "x"])
    assert unknown.exit_code != 0 and "no client" in unknown.output


def test_erasure_audit_names_no_student(client, runner, make_client):
    acme, key = make_client(anonymised=True)
    client.post(URL, json=beacon_body(key, student_id=MARKER_IDS[0]))
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", MARKER_IDS[0]])
    assert result.exit_code == 0, result.output
    assert find_markers(result.output) == set()
    assert find_markers(dump_database()) == set()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 0

