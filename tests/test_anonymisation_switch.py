"""Switching a client's mode both ways on a client with data: counts unchanged, nothing plain left, audited."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import beacon_body, csrf_token_from
from sqlalchemy import select

from app.billing import figures as billing
from app.clients import services as client_service
from app.extensions import db
from app.identity.student_ids import is_name_digest, normalise_name
from app.ingest.beacons import Beacon, record_beacon
from app.learners import anonymisation
from app.models import AuditEntry, Client, DailyUsage, Event, Learner

BEACONS = "/api/v1/beacons"
PLAIN_IDS = ["jane@example.com", "S-1001", "S-1002"]
PLAIN_NAMES = ["Doe, Jane", "Roe, Richard", "Poe, Edgar"]


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm")
    login(user)
    return user


def send(app, client_row: Client, student_id: str, name: str, course: str, when: dt.datetime,
         event: str = "launch"):
    """Record a beacon at a given time through the real ingest service."""
    snap = client_service.snapshot(db.session, client_row)
    record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                  Beacon(course=course, student_id=student_id, student_name=normalise_name(name), event=event),
                  lms_host="lms.example", now=when)


def period_counts(client_row: Client) -> dict:
    start, end = dt.date(2026, 1, 1), dt.date(2026, 12, 31)
    report = billing.usage_report(db.session, client_row, start, end)
    return {"unique": report["unique_users"], "launches": report["launches"],
            "per_course": [(c["course"], c["unique_users"], c["launches"]) for c in report["courses"]],
            "march": billing.unique_users(db.session, client_row.id, dt.date(2026, 3, 1), dt.date(2026, 3, 31))}


def plain_values_left(client_row: Client) -> list[str]:
    db.session.rollback()
    found = []
    texts = list(db.session.scalars(select(Learner.identity).where(Learner.client_id == client_row.id)))
    texts += [n for n in db.session.scalars(select(Learner.name).where(Learner.client_id == client_row.id)) if n]
    texts += [n for n in db.session.scalars(select(Event.learner_name).where(Event.client_id == client_row.id)) if n]
    for value in PLAIN_IDS + PLAIN_NAMES:
        found += [t for t in texts if value.lower() in t.lower()]
    return found


def confirm(client, slug: str, name: str):
    page = client.get(f"/admin/clients/{slug}/mode").get_data(as_text=True)
    return client.post(f"/admin/clients/{slug}/mode", data={"csrf_token": csrf_token_from(page),
                                                             "confirm_name": name})


@pytest.fixture
def acme_with_data(app, make_client):
    acme, key = make_client(name="Acme")
    march, april = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), dt.datetime(2026, 4, 7, 9, tzinfo=dt.UTC)
    for sid, name in zip(PLAIN_IDS, PLAIN_NAMES, strict=True):
        send(app, acme, sid, name, "Fire Safety", march)
        send(app, acme, sid, name, "Fire Safety", march + dt.timedelta(hours=1))
        send(app, acme, sid, name, "Fire Safety", march + dt.timedelta(days=1), event="completed")
    send(app, acme, PLAIN_IDS[0], PLAIN_NAMES[0], "GDPR Basics", april)
    send(app, acme, PLAIN_IDS[0], "Doe, J.", "GDPR Basics", april + dt.timedelta(hours=2))
    return acme, key


def test_the_page_explains_the_switch_in_plain_words(client, csm, acme_with_data):
    acme, _ = acme_with_data
    html = client.get(f"/admin/clients/{acme.slug}/mode").get_data(as_text=True)
    assert "irreversibly" in html
    assert "pseudonymisation, not anonymisation" in html and "GDPR" in html
    assert "nobody is counted twice" in html
    assert "Type Acme exactly to confirm." in html


def test_a_wrong_confirmation_changes_nothing(client, csm, acme_with_data):
    acme, _ = acme_with_data
    response = confirm(client, acme.slug, "acme")
    assert response.status_code == 400
    assert "That is not the client&#39;s name" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Client, acme.id).anonymised is False
    assert not plain_values_left(acme) == []  # the plain values are still there


def test_verbatim_to_anonymised_keeps_counts_and_leaves_no_plain_value(client, csm, acme_with_data, app):
    acme, key = acme_with_data
    before = period_counts(acme)
    assert before["unique"] == 3 and plain_values_left(acme)

    response = confirm(client, acme.slug, "Acme")
    assert response.status_code == 302
    db.session.rollback()
    acme = db.session.get(Client, acme.id)
    assert acme.anonymised is True
    assert period_counts(acme) == before
    assert plain_values_left(acme) == []
    assert all(row.pseudonymised and row.identity.startswith("p:") for row in
               db.session.scalars(select(Learner).where(Learner.client_id == acme.id)))
    names = set(db.session.scalars(select(Event.learner_name).where(Event.client_id == acme.id)))
    assert len(names) == 4 and all(is_name_digest(n) for n in names)  # "Doe, J." stays distinct

    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "client.mode"))
    assert entry.before == {"anonymised": False}
    assert entry.after["anonymised"] is True and entry.after["learners_pseudonymised"] == 3
    assert "jane" not in str(entry.after).lower()

    # A returning learner (now sent as a pseudonym) is the same learner: still 3 in the period.
    client.post(BEACONS, json=beacon_body(key, student_id=" JANE@example.com ", student_name="Doe, Jane",
                                          course="Fire Safety"))
    db.session.rollback()
    assert billing.unique_users(db.session, acme.id, dt.date(2026, 1, 1), dt.date(2026, 12, 31)) == 3
    assert plain_values_left(acme) == []


def test_anonymised_back_to_verbatim_links_returning_learners(client, csm, acme_with_data, app):
    acme, key = acme_with_data
    before = period_counts(acme)
    confirm(client, acme.slug, "Acme")
    response = confirm(client, acme.slug, "Acme")
    assert response.status_code == 302
    db.session.rollback()
    acme = db.session.get(Client, acme.id)
    assert acme.anonymised is False
    assert period_counts(acme) == before
    actions = [e.after["anonymised"] for e in db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "client.mode").order_by(AuditEntry.id))]
    assert actions == [True, False]

    # Jane returns with her plain ID: linked to her pseudonymised row, not a fourth learner.
    today = dt.datetime.now(dt.UTC).date()
    assert client.post(BEACONS, json=beacon_body(key, student_id="jane@example.com", student_name="Doe, Jane",
                                                 course="Fire Safety")).status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(Learner.id).where(Learner.identity == "jane@example.com")) is not None
    total = billing.unique_users(db.session, acme.id, dt.date(2026, 1, 1), max(today, dt.date(2026, 12, 31)))
    assert total == 3


def test_pseudonymising_merges_a_learner_stored_both_ways(app, make_client):
    """Anonymised, then verbatim (a returning learner not linked because her plain row already
    existed), then anonymised again: the two rows become one and she is counted once."""
    acme, _ = make_client(name="Acme", anonymised=True)
    day1 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    send(app, acme, "jane@example.com", "Doe, Jane", "Fire Safety", day1)
    acme.anonymised = False
    db.session.commit()
    # A plain row made directly (as a race with the switch could), alongside her pseudonymised one.
    snap = client_service.snapshot(db.session, acme)
    snap = client_service.ClientSnapshot(**{**snap.__dict__, "links_pseudonyms": False})
    record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                  Beacon(course="Fire Safety", student_id="jane@example.com", student_name="Doe, Jane"),
                  now=day1 + dt.timedelta(hours=1))
    record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                  Beacon(course="Fire Safety", student_id="jane@example.com", student_name="Doe, Jane"),
                  now=day1 + dt.timedelta(days=1))
    assert billing.unique_users(db.session, acme.id, dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == 2

    done = anonymisation.switch_mode(db.session, app.extensions["pseudonymiser"], acme, anonymised=True,
                                     actor="test")
    assert done["learners_merged"] == 1
    assert billing.unique_users(db.session, acme.id, dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == 1
    assert billing.launches(db.session, acme.id, dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == 3
    days = sorted((u.day, u.launches) for u in db.session.scalars(select(DailyUsage)))
    assert days == [(dt.date(2026, 3, 2), 2), (dt.date(2026, 3, 3), 1)]
    assert db.session.scalar(select(Learner.id).where(Learner.pseudonymised.is_(False))) is None
    assert len(list(db.session.scalars(select(Event)))) == 3


def test_switching_is_idempotent_and_refuses_the_same_mode(app, make_client):
    acme, _ = make_client(name="Acme", anonymised=True)
    with pytest.raises(client_service.ClientError):
        anonymisation.switch_mode(db.session, app.extensions["pseudonymiser"], acme, anonymised=True, actor="t")
    assert anonymisation.pseudonymise_learners(db.session, app.extensions["pseudonymiser"], acme) == {
        "learners_pseudonymised": 0, "learners_merged": 0, "event_names_replaced": 0}


def test_a_process_with_a_stale_cache_stores_no_plain_id_after_the_switch(client, csm, app, make_client):
    """Another process may hold the old (verbatim) mode for CLIENT_CACHE_SECONDS after the switch:
    the beacon's transaction reads the mode itself, so it stores the pseudonym."""
    acme, _ = make_client(name="Acme")
    stale = client_service.snapshot(db.session, acme)
    assert stale.anonymised is False
    confirm(client, acme.slug, "Acme")
    db.session.rollback()
    assert record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], stale,
                         Beacon(course="Fire Safety", student_id="S-1001", student_name="Roe, Richard"))
    acme = db.session.get(Client, acme.id)
    [learner] = db.session.scalars(select(Learner).where(Learner.client_id == acme.id)).all()
    assert learner.pseudonymised and learner.identity.startswith("p:")
    assert plain_values_left(acme) == []


def test_learners_stored_plain_before_the_fix_can_be_pseudonymised(client, csm, app, make_client):
    """Rows stored verbatim after a switch by an older release (its stale cache) are found and fixed."""
    acme, _ = make_client(name="Acme")
    confirm(client, acme.slug, "Acme")
    db.session.rollback()
    acme = db.session.get(Client, acme.id)
    now = dt.datetime.now(dt.UTC)
    db.session.add(Learner(client_id=acme.id, identity="S-1001", name="Roe, Richard", pseudonymised=False,
                           first_seen=now, last_seen=now))
    db.session.commit()
    html = client.get(f"/admin/clients/{acme.slug}/mode").get_data(as_text=True)
    assert "1 learner record(s) of this client are stored with a plain ID" in html
    response = client.post(f"/admin/clients/{acme.slug}/pseudonymise-remaining",
                           data={"csrf_token": csrf_token_from(html)}, follow_redirects=True)
    assert "1 remaining learner(s) pseudonymised" in response.get_data(as_text=True)
    assert plain_values_left(acme) == []
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.pseudonymise_remaining"))


def test_large_clients_are_sent_to_the_cli_and_the_cli_switches(client, csm, acme_with_data, monkeypatch,
                                                                 runner):
    import json

    import app.admin.clients as admin_views

    acme, _ = acme_with_data
    before = period_counts(acme)
    monkeypatch.setattr(admin_views, "WEB_PSEUDONYMISE_LIMIT", 2)
    html = client.get(f"/admin/clients/{acme.slug}/mode").get_data(as_text=True)
    assert f"client set-mode {acme.slug} --anonymised" in html
    response = confirm(client, acme.slug, "Acme")
    assert response.status_code == 400 and "Too many learners" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Client, acme.id).anonymised is False

    refused = runner.invoke(args=["client", "set-mode", acme.slug, "--anonymised", "--confirm-name", "Acme Corp"])
    assert refused.exit_code != 0 and "does not match" in refused.output
    result = runner.invoke(args=["client", "set-mode", acme.slug, "--anonymised", "--confirm-name", "Acme",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["learners_pseudonymised"] == 3
    db.session.rollback()
    acme = db.session.get(Client, acme.id)
    assert acme.anonymised and period_counts(acme) == before and plain_values_left(acme) == []
    assert db.session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "client.mode")) == "cli"


def test_a_client_whose_salt_was_deleted_cannot_be_pseudonymised(client, csm, acme_with_data):
    acme, _ = acme_with_data
    acme.salt = None
    db.session.commit()
    response = confirm(client, acme.slug, "Acme")
    assert response.status_code == 400
    assert "salt was deleted" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Client, acme.id).anonymised is False
