"""Placeholder student IDs: held back at ingest, counted nowhere, released by a CSM and then counted once."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
import uuid

import pytest
import time_machine
from conftest import beacon_body, csrf_token_from
from outbox_helpers import run_outbox
from sqlalchemy import func, inspect, select, text

from app.extensions import db
from app.identity.placeholders import DEFAULT_PLACEHOLDER_IDS
from app.learners.held_back_models import HeldBackBeacon
from app.licensing import licences
from app.licensing.licences import Window
from app.models import AuditEntry, DailyUsage, Event, Learner
from app.outbound.models import OutboxDelivery, OutboxEvent
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"
NOW = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(staff_service, "password_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def post(client, key, student_id, **fields):
    response = client.post(BEACONS, json=beacon_body(key, student_id=student_id, **fields))
    assert response.status_code == 204, response.get_data(as_text=True)
    return response


def counts(client_id: int) -> dict:
    db.session.rollback()
    return {
        "learners": db.session.scalar(select(func.count()).select_from(Learner).where(Learner.client_id == client_id)),
        "events": db.session.scalar(select(func.count()).select_from(Event).where(Event.client_id == client_id)),
        "usage": db.session.scalar(select(func.count()).select_from(DailyUsage)
                                   .where(DailyUsage.client_id == client_id)),
        "held": db.session.scalar(select(func.count()).select_from(HeldBackBeacon)
                                  .where(HeldBackBeacon.client_id == client_id, HeldBackBeacon.released_at.is_(None))),
        "outbox": db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                    .where(OutboxEvent.client_id == client_id)),
    }


def usage_api(client, token, slug) -> dict:
    response = client.get(f"/api/v1/clients/{slug}/usage?from=2026-03-01&to=2026-03-31",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return response.json


def spellings(form: str) -> list[str]:
    """The form as listed, shouted, capitalised, padded with spaces, tabs and a zero-width space."""
    return [form, form.upper(), f"  {form.capitalize()} ", f"\t{form}\n", f"\u200b{form.upper()}"]


@pytest.mark.parametrize("form", DEFAULT_PLACEHOLDER_IDS)
def test_each_default_form_in_any_case_padded_is_held_back_and_counted_nowhere(client, make_client, make_staff,
                                                                                 form):
    acme, key = make_client(name="Acme")
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    for spelling in spellings(form):
        post(client, key, spelling)
    post(client, key, spellings(form)[0], event="completed")
    assert counts(acme.id) == {"learners": 0, "events": 0, "usage": 0, "held": 6, "outbox": 0}
    report = usage_api(client, token, acme.slug)
    assert (report["unique_users"], report["launches"], report["courses"]) == (0, 0, [])
    assert report["held_back"] == {"beacons": 6, "launches": 5,
                                   "reasons": [{"placeholder": form, "beacons": 6, "launches": 5}]}
    assert licences.seats_used(db.session, acme.id, Window(dt.date(2026, 1, 1), dt.date(2026, 12, 31))) == 0


@pytest.mark.parametrize("student_id", ["1024", "a0", "00", "0.0", "-10", "null-user", "undefined1", "guests",
                                        "Anonymous Coward", "student_id", "{{student_id}}x"])
def test_a_real_id_that_merely_contains_a_placeholder_is_counted(client, make_client, student_id):
    acme, key = make_client(name="Acme")
    post(client, key, student_id)
    assert counts(acme.id) == {"learners": 1, "events": 1, "usage": 1, "held": 0, "outbox": 1}


@pytest.fixture
def acme_held(client, make_client, make_staff, runner):
    """Acme (two seats, a webhook endpoint) with a real learner, and `undefined` and `null` beacons held back."""
    acme, key = make_client(name="Acme")
    term = runner.invoke(args=["licence", "add-term", "--client", acme.slug, "--start", "2026-01-01",
                               "--end", "2026-12-31", "--seat-limit", "2"])
    assert term.exit_code == 0, term.output
    runner.invoke(args=["webhook", "add", "--url", "https://127.0.0.1:9/unused"])  # bodies stored, never sent
    post(client, key, "real-1", course="Fire Safety")
    for n, course in enumerate(("Fire Safety", "Fire Safety", "Anti-Bribery")):
        post(client, key, "undefined" if n % 2 == 0 else " UNDEFINED", course=course,
             student_name=f"Person{n}, Pat")
    post(client, key, "undefined", course="Fire Safety", event="passed")
    post(client, key, "null", course="Fire Safety")
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    return acme, key, token


def outbox_types(client_id) -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(select(OutboxEvent.type).where(OutboxEvent.client_id == client_id)))


def test_every_face_shows_held_back_beacons_apart_from_the_counts(app, client, acme_held, make_staff, login):
    acme, _, token = acme_held
    run_outbox(app)
    # One real learner: one enrolment; 1 of 2 seats is 50 %, no threshold; nothing for the placeholders.
    types = outbox_types(acme.id)
    assert [t for t in types if t.startswith("learner.")] == ["learner.enrolled"]
    assert "licence.threshold" not in types
    db.session.rollback()
    bodies = "".join(d.body for d in db.session.scalars(select(OutboxDelivery)))
    assert "undefined" not in bodies and "real-1" in bodies

    report = usage_api(client, token, acme.slug)
    assert (report["unique_users"], report["launches"]) == (1, 1)
    assert report["held_back"] == {"beacons": 5, "launches": 4, "reasons": [
        {"placeholder": "undefined", "beacons": 4, "launches": 3},
        {"placeholder": "null", "beacons": 1, "launches": 1}]}

    login(make_staff("billing"))
    page = client.get(f"/billing/{acme.slug}", query_string=MARCH).get_data(as_text=True)
    assert 'id="held-back"' in page and "4 launches held back" in page and "<code>undefined</code> × 4" in page
    assert '<div class="value">1</div>' in page  # unique users: the real learner only
    assert "Review and release" not in page  # billing staff cannot release; the CSM can

    rows = list(csv.reader(io.StringIO(client.get(f"/billing/{acme.slug}/usage.csv", query_string=MARCH)
                                       .get_data(as_text=True))))
    assert rows[0] == ["date", "course", "unique_users", "launches"]
    assert ["total", "(all courses)", "1", "1"] in rows
    assert rows[-3:] == [["held_back:null", "Fire Safety", "0", "1"],
                         ["held_back:undefined", "Anti-Bribery", "0", "1"],
                         ["held_back:undefined", "Fire Safety", "0", "2"]]
    learners = client.get(f"/billing/{acme.slug}/learners.csv", query_string=MARCH).get_data(as_text=True)
    assert "real-1" in learners and "undefined" not in learners


def test_go_live_and_release_through_the_admin_with_preview_and_confirm(app, client, acme_held, make_staff, login):
    acme, key, token = acme_held
    login(make_staff("csm", email="csm@vendor.example"))
    golive = client.get(f"/admin/clients/{acme.slug}/go-live").get_data(as_text=True)
    assert 'data-flag="held_back"' in golive and "“undefined”: 4 beacon(s), 3 launch(es)" in golive
    assert f'href="/admin/clients/{acme.slug}/held-back"' in golive

    listing = client.get(f"/admin/clients/{acme.slug}/held-back").get_data(as_text=True)
    assert 'id="held-back-table"' in listing and 'id="release-preview"' not in listing
    preview = client.get(f"/admin/clients/{acme.slug}/held-back", query_string={"release": "undefined"})
    page = preview.get_data(as_text=True)
    assert 'id="release-preview"' in page and "4 beacon(s), 3 of them launches" in page
    assert counts(acme.id)["held"] == 5, "a preview changes nothing"

    url = f"/admin/clients/{acme.slug}/held-back/release"
    headers = {"Referer": "https://localhost/admin"}
    unconfirmed = client.post(url, data={"csrf_token": csrf_token_from(page), "placeholder": "undefined"},
                              headers=headers)
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.get_data(as_text=True)
    assert client.post(url, data={"placeholder": "undefined", "confirm": "y"}, headers=headers).status_code == 400
    assert counts(acme.id)["held"] == 5

    done = client.post(url, data={"csrf_token": csrf_token_from(page), "placeholder": "undefined", "confirm": "y"},
                       headers=headers)
    assert done.status_code == 302
    # "undefined" is one more learner now, with its launches on their day; "null" is still held back.
    report = usage_api(client, token, acme.slug)
    assert (report["unique_users"], report["launches"]) == (2, 4)
    assert {c["course"]: (c["unique_users"], c["launches"]) for c in report["courses"]} == {
        "Anti-Bribery": (1, 1), "Fire Safety": (2, 3)}
    assert report["held_back"]["reasons"] == [{"placeholder": "null", "beacons": 1, "launches": 1}]
    db.session.rollback()
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "held_back.release"))
    assert entry.actor == "csm@vendor.example"
    assert entry.after == {"placeholder": "undefined", "beacons": 4, "launches": 3}

    # Webhooks see the released learner now: one enrolment per course, the pass, and 2 of 2 seats.
    run_outbox(app)
    types = outbox_types(acme.id)
    assert types.count("learner.enrolled") == 3 and types.count("learner.passed") == 1
    # 1 to 2 of 2 seats crosses 80, 90 and 100 % at once: one alert, for the highest.
    assert [t for t in types if t.startswith("licence.threshold")] == ["licence.threshold"]

    # Counted once: a retried beacon stays a duplicate, a second release finds nothing.
    retry_id = str(db.session.scalar(select(HeldBackBeacon.event_id).where(HeldBackBeacon.placeholder == "undefined")
                                     .limit(1)))
    post(client, key, "undefined", event_id=retry_id)
    again = client.post(url, data={"csrf_token": csrf_token_from(page), "placeholder": "undefined", "confirm": "y"},
                        headers=headers)
    assert again.status_code == 302
    assert (usage_api(client, token, acme.slug)["launches"]) == 4
    assert counts(acme.id)["events"] == 1 + 4


def test_a_placeholder_sent_after_a_release_is_held_back_again(client, acme_held, app):
    acme, key, token = acme_held
    from app.ingest import held_back

    held_back.release(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], acme,
                      actor="test")
    assert usage_api(client, token, acme.slug)["unique_users"] == 3
    # A released placeholder has no ID shape: it is no ID scheme, and the drift check must not pair it.
    released = db.session.scalars(select(Learner).where(Learner.identity == "undefined")).all()
    assert released and all(learner.id_shape is None for learner in released)
    post(client, key, "undefined")
    report = usage_api(client, token, acme.slug)
    assert (report["unique_users"], report["launches"]) == (3, 5)
    assert report["held_back"]["beacons"] == 1


def test_a_list_edited_by_a_csm_takes_effect(client, make_client, make_staff, login):
    acme, key = make_client(name="Acme")
    login(make_staff("csm"))
    edit = f"/admin/clients/{acme.slug}/edit"
    page = client.get(edit).get_data(as_text=True)
    textarea = re.search(r'<textarea[^>]*name="placeholder_ids"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert html.unescape(textarea).strip().splitlines() == list(DEFAULT_PLACEHOLDER_IDS)  # the defaults, prefilled
    data = {"csrf_token": csrf_token_from(page), "name": "Acme", "active": "y", "licence": "subscription",
            "origins": "", "placeholder_ids": "undefined\n  Student  \nTEST-LEARNER\n"}
    response = client.post(edit, data=data, headers={"Referer": "https://localhost/admin"})
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.rollback()
    assert acme.placeholder_ids == ["undefined", "student", "test-learner"]

    post(client, key, "STUDENT")
    post(client, key, "test-learner ")
    post(client, key, "0")  # no longer on the list: a learner
    assert counts(acme.id) == {"learners": 1, "events": 1, "usage": 1, "held": 2, "outbox": 1}
    db.session.rollback()
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.update"))
    assert "placeholder_ids" in audit.after

    bad = dict(data, placeholder_ids="ok\nbad\x07bell")
    refused = client.post(edit, data=bad, headers={"Referer": "https://localhost/admin"})
    assert refused.status_code == 400 and "control characters" in refused.get_data(as_text=True)
    # The defaults again: stored as "the defaults", so the client follows them.
    back = dict(data, placeholder_ids="\n".join(reversed(DEFAULT_PLACEHOLDER_IDS)))
    assert client.post(edit, data=back, headers={"Referer": "https://localhost/admin"}).status_code == 302
    db.session.rollback()
    assert acme.placeholder_ids is None


def dump_database() -> str:
    db.session.rollback()
    chunks = []
    with db.engine.connect() as conn:
        for table in inspect(db.engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                chunks.append(f"{table}: {row!r}")
    return "\n".join(chunks)


def test_anonymised_client_holds_back_with_nothing_plain_stored(app, client, make_client, runner):
    acme, key = make_client(name="Acme", anonymised=True)
    post(client, key, " Undefined ", student_name="Zebulon-Marker, Quixote")
    post(client, key, "undefined", student_name="Xylophage-Marker, Ann")
    db.session.rollback()
    rows = list(db.session.scalars(select(HeldBackBeacon)))
    assert len(rows) == 2 and all(r.pseudonymised and r.identity.startswith("p:") for r in rows)
    assert rows[0].identity == rows[1].identity and all(r.name.startswith("n:") for r in rows)
    # Only the matched list entry (configuration, not learner data) names the placeholder.
    assert {r.placeholder for r in rows} == {"undefined"}
    dump = dump_database()
    assert "marker" not in dump.casefold()
    assert "Undefined" not in dump

    result = runner.invoke(args=["held-back", "release", "--client", acme.slug, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"client": acme.slug, "placeholder": None, "released": 2, "launches": 2}
    db.session.rollback()
    learner = db.session.scalar(select(Learner).where(Learner.client_id == acme.id))
    assert learner.pseudonymised and learner.identity == rows[0].identity
    assert "marker" not in dump_database().casefold()


def test_switching_to_anonymised_pseudonymises_held_back_beacons(app, client, make_client):
    from app.learners import anonymisation

    acme, key = make_client(name="Acme")
    post(client, key, "null", student_name="Zebulon-Marker, Quixote")
    done = anonymisation.switch_mode(db.session, app.extensions["pseudonymiser"], acme, anonymised=True, actor="t")
    assert done["held_back_pseudonymised"] == 1
    row = db.session.scalar(select(HeldBackBeacon))
    assert row.identity.startswith("p:") and row.name.startswith("n:")
    assert "marker" not in dump_database().casefold()


def test_cli_lists_releases_and_sets_the_policy(client, make_client, runner):
    acme, key = make_client(name="Acme")
    post(client, key, "[object Object]")
    listed = runner.invoke(args=["held-back", "list", "--client", acme.slug, "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert (data["beacons"], data["courses"][0]["placeholder"]) == (1, "[object object]")

    refused = runner.invoke(args=["held-back", "release", "--client", acme.slug], input="n\n")
    assert refused.exit_code != 0 and counts(acme.id)["held"] == 1
    nothing = runner.invoke(args=["held-back", "release", "--client", acme.slug, "--placeholder", "null", "--yes"])
    assert nothing.exit_code != 0 and "nothing is held back" in nothing.output
    released = runner.invoke(args=["held-back", "release", "--client", acme.slug], input="y\n")
    assert released.exit_code == 0 and "Released 1 beacon(s)" in released.output
    assert counts(acme.id)["learners"] == 1

    cleared = runner.invoke(args=["held-back", "policy", "--client", acme.slug, "--clear", "--json"])
    assert json.loads(cleared.output) == {"client": acme.slug, "placeholder_ids": [], "defaults": False}
    custom = runner.invoke(args=["held-back", "policy", "--client", acme.slug, "--set", " Guest ", "--set", "N/A"])
    assert custom.exit_code == 0 and "'guest', 'n/a'" in custom.output
    client.application.extensions["client_directory"].clear()
    post(client, key, "n/a", event_id=str(uuid.uuid4()))
    post(client, key, "undefined")  # not on this client's list any more
    assert counts(acme.id)["held"] == 1 and counts(acme.id)["learners"] == 2
    defaults = runner.invoke(args=["held-back", "policy", "--client", acme.slug, "--defaults", "--json"])
    assert json.loads(defaults.output)["defaults"] is True


def test_erasure_removes_held_back_beacons_of_that_id(client, make_client, runner):
    acme, key = make_client(name="Acme")
    post(client, key, "guest")
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "guest"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(HeldBackBeacon)) == 0
