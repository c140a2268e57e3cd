"""The go-live Student ID check: each health flag raised by a crafted beacon stream, none by a clean one."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import beacon_body

from app.clients import services as client_service
from app.extensions import db
from app.identity.student_ids import normalise_name, normalise_student_id
from app.ingest import golive
from app.ingest.beacons import Beacon, record_beacon, record_refused_origin

NOW = dt.datetime(2026, 6, 15, 12, tzinfo=dt.UTC)
BEACONS = "/api/v1/beacons"


def send(app, client_row, student_id: str, name: str, when: dt.datetime = NOW, course: str = "Fire Safety"):
    snap = client_service.snapshot(db.session, client_row)
    record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                  Beacon(course=course, student_id=normalise_student_id(student_id),
                         student_name=normalise_name(name)), lms_host="lms.acme.example", now=when)


def flags(app, client_row) -> dict[str, golive.HealthFlag]:
    report = golive.health_report(db.session, app.extensions["pseudonymiser"], client_row, now=NOW)
    return {f.code: f for f in report.flags}


def clean_stream(app, client_row, learners: int = 12):
    """A week of ordinary use: stable IDs, "Last, First" names, a few new learners a day."""
    for n in range(learners):
        first = NOW - dt.timedelta(days=6) + dt.timedelta(hours=9 * n)
        for visit in range(2):
            send(app, client_row, f"S-{1000 + n}", f"Learner{n}, Pat", first + dt.timedelta(hours=visit * 5))


@pytest.fixture(params=[False, True], ids=["verbatim", "anonymised"])
def acme(request, make_client):
    client_row, _ = make_client(name="Acme", anonymised=request.param, origins=["https://lms.acme.example"])
    return client_row


def test_a_clean_stream_raises_no_flag(app, acme):
    clean_stream(app, acme)
    assert flags(app, acme) == {}


@pytest.mark.parametrize("placeholder", ["undefined", "null", "0", "NULL", "  Undefined "])
def test_placeholder_ids_are_held_back_and_flagged_with_their_count(app, acme, placeholder):
    clean_stream(app, acme)
    send(app, acme, placeholder, "Smith, Ann")
    send(app, acme, placeholder, "Jones, Bob", NOW + dt.timedelta(minutes=5))
    found = flags(app, acme)
    assert set(found) == {"held_back"}
    [example] = found["held_back"].examples
    assert example.startswith(f"“{placeholder.strip().lower()}”: 2 beacon(s), 2 launch(es)")
    assert "2 beacon(s), 2 of them launches" in found["held_back"].detail


@pytest.mark.parametrize("placeholder", ["undefined", "null", "0", "NULL"])
def test_placeholder_learners_stored_counted_are_flagged(app, acme, placeholder):
    """Learners counted under a placeholder (stored before the list held them back, or released)."""
    clean_stream(app, acme)
    client_service.update_client(db.session, acme, actor="t", name=acme.name, active=True, licence=acme.licence,
                                 origins=acme.allowed_origins, placeholder_ids=[])
    app.extensions["client_directory"].clear()
    send(app, acme, placeholder, "Smith, Ann")
    found = flags(app, acme)
    assert set(found) == {"placeholder_ids"}
    assert any(placeholder.lower() in x.lower() for x in found["placeholder_ids"].examples)


def test_same_id_with_several_names_is_flagged(app, acme):
    clean_stream(app, acme)
    send(app, acme, "shared-account", "Smith, Ann")
    send(app, acme, "shared-account", "Jones, Bob", NOW + dt.timedelta(minutes=5))
    found = flags(app, acme)
    assert set(found) == {"id_with_several_names"}
    [example] = found["id_with_several_names"].examples
    assert example.endswith("2 names")
    assert ("shared-account" in example) is (not acme.anonymised)


def test_one_name_under_many_ids_is_flagged(app, acme):
    clean_stream(app, acme)
    for n in range(3):
        send(app, acme, f"session-{n}", "Smith, Ann", NOW - dt.timedelta(hours=n))
    found = flags(app, acme)
    assert set(found) == {"name_with_many_ids"}
    [example] = found["name_with_many_ids"].examples
    assert example.endswith("3 IDs")
    assert ("Smith" in example) is (not acme.anonymised)


def test_names_not_in_last_first_form_are_flagged_for_verbatim_clients_only(app, acme):
    clean_stream(app, acme)
    send(app, acme, "S-9", "Ann Smith")
    found = flags(app, acme)
    if acme.anonymised:
        assert found == {}
        report = golive.health_report(db.session, app.extensions["pseudonymiser"], acme, now=NOW)
        assert any("Last, First" in n for n in report.not_checked)
    else:
        assert set(found) == {"name_not_last_first"}
        assert found["name_not_last_first"].examples == ["Ann Smith"]


def test_a_spike_of_new_ids_is_flagged(app, acme):
    clean_stream(app, acme)  # about 2 new learners a day in the week before
    for n in range(15):
        send(app, acme, f"new-{n}", f"Newcomer{n}, Lee", NOW - dt.timedelta(minutes=n))
    found = flags(app, acme)
    assert set(found) == {"new_id_spike"}
    assert "15 new student IDs" in found["new_id_spike"].detail


def test_a_go_live_day_is_not_a_spike(app, acme):
    for n in range(30):
        send(app, acme, f"first-{n}", f"Learner{n}, Pat", NOW - dt.timedelta(minutes=n))
    assert flags(app, acme) == {}


def test_refused_origins_are_flagged_with_their_hosts(app, acme, client):
    clean_stream(app, acme)
    record_refused_origin(db.session, acme.id, "https://rogue-lms.example", now=NOW)
    record_refused_origin(db.session, acme.id, "https://rogue-lms.example", now=NOW)
    found = flags(app, acme)
    assert set(found) == {"refused_origins"}
    assert found["refused_origins"].examples[0].startswith("https://rogue-lms.example: 2 beacon(s)")


def test_refused_origin_recorded_by_the_beacon_endpoint(app, make_client, client):
    acme, key = make_client(name="Acme", origins=["https://lms.acme.example"])
    response = client.post(BEACONS, json=beacon_body(key), headers={"Origin": "https://other-lms.example"})
    assert response.status_code == 403
    report = golive.health_report(db.session, app.extensions["pseudonymiser"], acme)
    assert [r["origin"] for r in report.refused_origins] == ["https://other-lms.example"]


# --- the page and its live feed ---------------------------------------------------------


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm")
    login(user)
    return user


def test_go_live_page_for_an_anonymised_client_shows_no_plain_value(client, csm, make_client):
    acme, key = make_client(name="Acme", anonymised=True)
    for name in ("Smith, Ann", "Jones, Bob"):
        assert client.post(BEACONS, json=beacon_body(key, student_id="shared-account", student_name=name,
                                                     course="Fire Safety")).status_code == 204
    html = client.get(f"/admin/clients/{acme.slug}/go-live").get_data(as_text=True)
    assert "The same student ID arrives with different names" in html
    assert "Fire Safety" in html and "p:" in html and "n:" in html
    for plain in ("shared-account", "Smith", "Jones"):
        assert plain not in html
    feed = client.get(f"/admin/clients/{acme.slug}/go-live/beacons.json").get_data(as_text=True)
    assert "p:" in feed
    for plain in ("shared-account", "Smith", "Jones"):
        assert plain not in feed


def test_live_feed_returns_only_newer_beacons_escaped_on_the_page(client, csm, make_client):
    acme, key = make_client(name="Acme")
    client.post(BEACONS, json=beacon_body(key, student_id="s-1", student_name="<b>Doe</b>, Jane"))
    page = client.get(f"/admin/clients/{acme.slug}/go-live").get_data(as_text=True)
    assert "&lt;b&gt;Doe&lt;/b&gt;, Jane" in page and "<b>Doe</b>" not in page
    assert 'src="/static/golive.js"' in page and "<script>" not in page
    first = client.get(f"/admin/clients/{acme.slug}/go-live/beacons.json").json
    assert [b["student_id"] for b in first["beacons"]] == ["s-1"]
    assert client.get(f"/admin/clients/{acme.slug}/go-live/beacons.json?after={first['last_id']}").json == {
        "beacons": [], "last_id": first["last_id"]}
    client.post(BEACONS, json=beacon_body(key, student_id="s-2", student_name="Roe, Rick"))
    newer = client.get(f"/admin/clients/{acme.slug}/go-live/beacons.json?after={first['last_id']}").json
    assert [b["student_id"] for b in newer["beacons"]] == ["s-2"]
    client.post(BEACONS, json=beacon_body(key, student_id="s-3", student_name="Poe, Ed"))
    both = client.get(f"/admin/clients/{acme.slug}/go-live/beacons.json?after={first['last_id']}").json
    assert [b["student_id"] for b in both["beacons"]] == ["s-2", "s-3"]  # oldest first, for the feed


def test_go_live_page_empty_state_says_what_to_do(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    html = client.get(f"/admin/clients/{acme.slug}/go-live").get_data(as_text=True)
    assert "Waiting for the first beacon" in html and "no problems found" in html
