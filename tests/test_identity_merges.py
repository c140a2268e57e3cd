"""Issue 17, merges and ID-scheme drift: a generated client whose LMS switches from e-mail
student IDs to numeric ones in the middle of June, in both modes.

The drift alert fires once (a real SMTP server, aiosmtpd, and the `identity.drift`
event in the outbox), the proposals pair exactly the people who came back under a new
ID, merging makes June's unique learners the true number of people on every face
(usage API, CSV, seats), and undo restores every figure. Look-alike names with no
ID change are never proposed. For anonymised clients nothing plain is stored.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import signal
import threading
from dataclasses import dataclass, field

import pytest
import time_machine
from conftest import beacon_body, csrf_token_from
from sqlalchemy import select

from app.billing import drift
from app.extensions import db
from app.learners.models import IdentityDrift, LearnerMerge
from app.licensing import licences
from app.licensing.periods import Period
from app.models import AuditEntry, Event, Learner
from app.outbound import outbox
from app.outbound.models import OutboxDelivery, OutboxEvent
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"
JUNE = Period(dt.date(2026, 6, 1), dt.date(2026, 6, 30))
SWITCH = dt.datetime(2026, 6, 15, 7, 0, tzinfo=dt.UTC)
CHECKED = dt.datetime(2026, 6, 28, 18, 0, tzinfo=dt.UTC)
COURSES = ("Anti-Bribery", "Data Protection", "Fire Safety")


@dataclass
class Scenario:
    """What was sent, with the truth: who is which person."""

    people: int = 0
    returned: dict[str, str] = field(default_factory=dict)  # e-mail ID -> numeric ID, same person
    plain: list[str] = field(default_factory=list)  # every plain ID and name sent


def _send(client, key, when, student_id, name, course, scenario):
    scenario.plain += [student_id, name]
    with time_machine.travel(when, tick=False):
        response = client.post(BEACONS, json=beacon_body(key, student_id=student_id, student_name=name,
                                                         course=course))
    assert response.status_code == 204, response.get_data(as_text=True)


def generate(client, key, seed: int = 17) -> Scenario:
    """20 people on e-mail IDs from 1 June; from 15 June the LMS sends numeric IDs: 12 of
    them come back under one, 4 people are new. Look-alikes: two different "Lee, Sam"
    (both e-mail IDs), and "Kim, Alex" whose e-mail ID keeps arriving after a numeric
    "Kim, Alex" (another person) appears."""
    rng = random.Random(seed)
    s = Scenario()
    before = [(f"learner.{n}@acme.example", f"Surname{n}, Given{n}") for n in range(20)]
    for n, (student_id, name) in enumerate(before):
        day = dt.datetime(2026, 6, 1 + n % 10, 9, rng.randrange(60), tzinfo=dt.UTC)
        _send(client, key, day, student_id, name, COURSES[n % 3], s)
        if n % 4 == 0:  # some launch again before the switch
            _send(client, key, day + dt.timedelta(days=2), student_id, name, COURSES[n % 3], s)
    for n in range(12):
        numeric = f"{40000 + n:06d}"
        s.returned[before[n][0]] = numeric
        day = SWITCH + dt.timedelta(days=n % 10, hours=rng.randrange(8))
        course = COURSES[n % 3] if n % 3 else COURSES[(n + 1) % 3]  # some open another course
        _send(client, key, day, numeric, before[n][1], course, s)
    for n in range(4):
        _send(client, key, SWITCH + dt.timedelta(days=n + 1), f"{50000 + n:06d}", f"Newcomer{n}, Nina", COURSES[0], s)
    # Look-alikes.
    _send(client, key, dt.datetime(2026, 6, 3, 10, tzinfo=dt.UTC), "sam.lee@acme.example", "Lee, Sam", COURSES[1], s)
    _send(client, key, dt.datetime(2026, 6, 20, 10, tzinfo=dt.UTC), "sam.lee2@acme.example", "Lee, Sam",
          COURSES[1], s)
    _send(client, key, dt.datetime(2026, 6, 5, 10, tzinfo=dt.UTC), "alex.kim@acme.example", "Kim, Alex", COURSES[2], s)
    _send(client, key, dt.datetime(2026, 6, 18, 10, tzinfo=dt.UTC), "777001", "Kim, Alex", COURSES[2], s)
    _send(client, key, dt.datetime(2026, 6, 25, 10, tzinfo=dt.UTC), "alex.kim@acme.example", "Kim, Alex", COURSES[2], s)
    s.people = 20 + 4 + 2 + 2
    return s


IDENTITIES = 20 + 12 + 4 + 2 + 2


@pytest.fixture
def app_config(app_config, smtp):
    return {**app_config, "SMTP_URL": smtp.url, "MAIL_FROM": "tracker@vendor.example",
            "PUBLIC_URL": "https://track.vendor.example"}


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(staff_service, "password_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


def _worker_round(app):
    """One round of the outbox worker as `outbox run` does it (its periodic sweep checks for drift)."""
    public = app.config["PUBLIC_URL"]
    outbox.run_once(db.session, outbox.Settings.from_config(app.config), sweep_all=True,
                    drift_check=lambda session, now: drift.check_drift(
                        session, now, review_url=lambda c: f"{public}/admin/clients/{c.slug}/identities"))


def _usage(client, token, slug) -> dict:
    response = client.get(f"/api/v1/clients/{slug}/usage?from=2026-06-01&to=2026-06-30",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return response.json


def _csv_total(client, slug) -> int:
    response = client.get(f"/billing/{slug}/usage.csv?from=2026-06-01&to=2026-06-30")
    assert response.status_code == 200, response.status_code
    body = response.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    return int(next(r for r in rows if r["date"] == "total" and r["course"] == "(all courses)")["unique_users"])


def _learners_csv(client, slug) -> list[dict]:
    body = client.get(f"/billing/{slug}/learners.csv?from=2026-06-01&to=2026-06-30").get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(body)))


def _figures(client, token, acme) -> dict:
    usage = _usage(client, token, acme.slug)
    return {"api": usage["unique_users"], "csv": _csv_total(client, acme.slug),
            "seats": licences.seats_used(db.session, acme.id, JUNE),
            "learner_rows": len({r["student_id"] for r in _learners_csv(client, acme.slug)}),
            "course_users": {c["course"]: c["unique_users"] for c in usage["courses"]}}


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_switch_from_email_to_numeric_ids_mid_month(app, client, make_client, make_staff, login, runner, smtp,
                                                    anonymised):
    acme, key = make_client(name="Acme", anonymised=anonymised)
    csm = make_staff("csm", email="csm@vendor.example")
    licences.set_contacts(db.session, acme, ["ops@acme.example"], actor="test")
    runner.invoke(args=["webhook", "add", "--url", "https://127.0.0.1:9/unused", "--event", "identity.drift"])
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    scenario = generate(client, key)

    shapes = dict(db.session.execute(select(Learner.id_shape, Learner.id)).all())
    assert set(shapes) == {"email", "numeric"}, "every learner has the shape of its ID, in both modes"

    with time_machine.travel(CHECKED, tick=False):
        login(csm)
        before = _figures(client, token, acme)
        assert before["api"] == before["csv"] == before["seats"] == before["learner_rows"] == IDENTITIES

        # The alert: once, however often the worker and cron look.
        for _ in range(3):
            _worker_round(app)
        cron = runner.invoke(args=["identity", "check-drift", "--json"])
        assert cron.exit_code == 0 and json.loads(cron.output) == {"opened": []}, cron.output
        _worker_round(app)

        episodes = list(db.session.scalars(select(IdentityDrift)))
        assert len(episodes) == 1
        episode = episodes[0]
        assert (episode.from_shape, episode.to_shape, episode.pairs) == ("email", "numeric", 12)
        assert episode.new_learners == 12 + 4 + 1 and episode.since.date() == SWITCH.date()

        events = list(db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == "identity.drift")))
        assert len(events) == 1
        webhook = [d for d in db.session.scalars(select(OutboxDelivery).where(OutboxDelivery.channel == "webhook"))
                   if d.event_id == events[0].id]
        assert len(webhook) == 1
        body = json.loads(webhook[0].body)
        assert body["type"] == "identity.drift"
        assert body["data"] == {"client": acme.slug, "from_shape": "email", "to_shape": "numeric",
                                "since": episode.since.isoformat(), "pairs": 12, "new_learners": 17, "window_days": 30,
                                "drift": episode.id,
                                "review_url": f"https://track.vendor.example/admin/clients/{acme.slug}/identities"}
        mails = smtp.by_subject()
        subject = "Acme's LMS changed its student IDs (email → numeric)"
        # The vendor's staff review and merge (the link is into the admin); the client's contacts are not mailed.
        assert sorted(mails.pop(subject)) == ["csm@vendor.example"], "once"
        assert not [s for s in mails if "student IDs" in s]
        text = smtp.texts()
        assert "Since 2026-06-15, 17 new learner(s)" in text and "12 of them match" in text
        assert f"/admin/clients/{acme.slug}/identities" in text

        # The proposals pair exactly the people who came back; the look-alikes are not proposed.
        found = drift.proposals(db.session, acme)
        ids = dict(db.session.execute(select(Learner.id, Learner.identity)).all())
        if anonymised:
            pairs = {(ids[p.old.learner_id], ids[p.new.learner_id]) for p in found}
            assert all(a.startswith("p:") and b.startswith("p:") for a, b in pairs)
            expected = {(_pseudonym(app, acme, old), _pseudonym(app, acme, new)) for old, new in scenario.returned.items()}
            assert pairs == expected
            assert {p.matched_on for p in found} == {"name digest"}
        else:
            assert {(ids[p.old.learner_id], ids[p.new.learner_id]) for p in found} == set(scenario.returned.items())
            assert {p.matched_on for p in found} == {"name"}
        assert all(0.6 <= p.confidence <= 1 for p in found)
        assert any(p.shared_courses == 0 for p in found) and any(p.shared_courses == 1 for p in found)

        # The review page: the pairs and the preview of the effect on this and last period.
        page = client.get(f"/admin/clients/{acme.slug}/identities")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert html.count('data-pair="') == 12
        assert f"{IDENTITIES} → {scenario.people}" in html, "this period: every identity, then the true people"
        assert "0 → 0" in html, "last period had nobody"
        assert _figures(client, token, acme) == before, "the preview changed nothing"

        # Merge one, then all.
        token_csrf = csrf_token_from(html)
        first = found[0]
        merged = client.post(f"/admin/clients/{acme.slug}/identities/merge",
                             data={"pair": first.key, "csrf_token": token_csrf},
                             headers={"Referer": "https://localhost/admin/"})
        assert merged.status_code == 302
        assert _figures(client, token, acme)["api"] == IDENTITIES - 1
        refused = client.post(f"/admin/clients/{acme.slug}/identities/merge",
                              data={"scope": "all", "csrf_token": token_csrf},
                              headers={"Referer": "https://localhost/admin/"})
        assert refused.status_code == 400 and "Tick the box to confirm." in refused.get_data(as_text=True)
        assert _figures(client, token, acme)["api"] == IDENTITIES - 1, "merge all unconfirmed merges nothing"
        gone = client.post(f"/admin/clients/{acme.slug}/identities/merge",
                           data={"pair": first.key, "csrf_token": token_csrf},
                           headers={"Referer": "https://localhost/admin/"})
        assert gone.status_code == 409 and "no longer proposed" in gone.get_data(as_text=True)
        client.post(f"/admin/clients/{acme.slug}/identities/merge",
                    data={"scope": "all", "confirm": "y", "csrf_token": token_csrf},
                    headers={"Referer": "https://localhost/admin/"})
        after = _figures(client, token, acme)
        assert after["api"] == after["csv"] == after["seats"] == after["learner_rows"] == scenario.people
        assert db.session.query(LearnerMerge).filter(LearnerMerge.undone_at.is_(None)).count() == 12
        # Per course: a person who used one course under both IDs counts once there too.
        assert sum(after["course_users"].values()) < sum(before["course_users"].values())
        with time_machine.travel(CHECKED + dt.timedelta(days=1), tick=False):
            assert drift.proposals(db.session, acme) == [], "nothing left to propose"
            _worker_round(app)
        assert db.session.query(OutboxEvent).filter(OutboxEvent.type == "identity.drift").count() == 1, \
            "merging ends no episode early: no second alert"

        # Undo restores the figures, one merge at a time.
        history = client.get(f"/admin/clients/{acme.slug}/identities").get_data(as_text=True)
        assert history.count("Undo</button>") == 12
        merge_ids = [m.id for m in db.session.scalars(select(LearnerMerge))]
        for done, merge_id in enumerate(merge_ids, start=1):
            response = client.post(f"/admin/clients/{acme.slug}/identities/merges/{merge_id}/undo",
                                   data={"csrf_token": token_csrf}, headers={"Referer": "https://localhost/admin/"})
            assert response.status_code == 302
            assert _figures(client, token, acme)["api"] == scenario.people + done
        assert _figures(client, token, acme) == before

    actions = [a for a, in db.session.execute(select(AuditEntry.action).where(AuditEntry.client_id == acme.id))]
    assert actions.count("learner.merge") == 12 and actions.count("learner.unmerge") == 12
    if anonymised:
        _assert_nothing_plain(scenario, smtp)


def _pseudonym(app, acme, student_id):
    from app.clients.services import snapshot

    return app.extensions["pseudonymiser"].pseudonym(snapshot(db.session, acme).pseudonym_key, student_id)


def _assert_nothing_plain(scenario, smtp):
    stored = json.dumps([
        [list(r) for r in db.session.execute(select(Learner.identity, Learner.name, Learner.id_shape))],
        [list(r) for r in db.session.execute(select(Event.learner_name))],
        [[a.before, a.after] for a in db.session.scalars(select(AuditEntry))],
        [m.evidence for m in db.session.scalars(select(LearnerMerge))],
        [e.facts for e in db.session.scalars(select(OutboxEvent))],
        [d.body for d in db.session.scalars(select(OutboxDelivery))],
    ], default=str) + smtp.texts()
    for value in scenario.plain:
        assert value not in stored, f"{value!r} is stored plain"


def test_lookalike_names_without_an_id_change_are_never_proposed(app, client, make_client, runner):
    """Same shape, or an old ID that keeps arriving: different people, whatever their names."""
    acme, key = make_client(name="Lookalike Org")
    s = Scenario()
    for n in range(5):  # five pairs of namesakes, both on e-mail IDs
        _send(client, key, dt.datetime(2026, 6, 2, 9, tzinfo=dt.UTC), f"a{n}@acme.example", f"Namesake{n}, Pat",
              COURSES[0], s)
        _send(client, key, dt.datetime(2026, 6, 20, 9, tzinfo=dt.UTC), f"b{n}@acme.example", f"Namesake{n}, Pat",
              COURSES[0], s)
    for n in range(5):  # a numeric namesake appears while the e-mail ID is still in use
        _send(client, key, dt.datetime(2026, 6, 3, 9, tzinfo=dt.UTC), f"c{n}@acme.example", f"Twin{n}, Lou",
              COURSES[0], s)
        _send(client, key, dt.datetime(2026, 6, 18, 9, tzinfo=dt.UTC), f"9{n}", f"Twin{n}, Lou", COURSES[0], s)
        _send(client, key, dt.datetime(2026, 6, 22, 9, tzinfo=dt.UTC), f"c{n}@acme.example", f"Twin{n}, Lou",
              COURSES[0], s)
    for n in range(3):  # one name under three shapes in turn: which pairs with which is not guessed
        for day, student_id in ((2, f"tia{n}@acme.example"), (12, f"tia.{n}"), (22, f"3300{n}")):
            _send(client, key, dt.datetime(2026, 6, day, 9, tzinfo=dt.UTC), student_id, f"Three{n}, Tia",
                  COURSES[0], s)
    with time_machine.travel(CHECKED, tick=False):
        assert drift.proposals(db.session, acme) == []
        result = runner.invoke(args=["identity", "check-drift", "--client", acme.slug, "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == {"opened": []}
    assert db.session.query(OutboxEvent).filter(OutboxEvent.type == "identity.drift").count() == 0


def test_the_outbox_run_command_checks_for_drift_on_its_sweep(app, client, make_client, runner, monkeypatch):
    """`outbox run` hands the worker the drift check (the outbox sits below drift and does not
    import it): its first sweep opens the episode and queues the alert with the review link."""
    acme, key = make_client(name="Acme")
    generate(client, key)
    real_check = drift.check_drift
    calls = []

    def check_then_stop(*args, **kwargs):
        calls.append(kwargs["review_url"](acme))
        try:
            return real_check(*args, **kwargs)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the command's own handler: stop after this round

    monkeypatch.setattr(drift, "check_drift", check_then_stop)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Without the drift check the worker would never stop itself: stop it anyway, and fail below.
    fallback = threading.Timer(60, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        with time_machine.travel(CHECKED, tick=False):
            fallback.start()
            result = runner.invoke(args=["outbox", "run", "--poll", "0.05"])
    finally:
        fallback.cancel()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 0, result.output
    assert calls == [f"https://track.vendor.example/admin/clients/{acme.slug}/identities"]
    db.session.expire_all()
    episodes = list(db.session.scalars(select(IdentityDrift)))
    assert [(e.client_id, e.from_shape, e.to_shape, e.pairs) for e in episodes] == [(acme.id, "email", "numeric", 12)]
    events = list(db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == "identity.drift")))
    assert [e.facts["review_url"] for e in events] == [calls[0]]


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_cli_merge_and_unmerge(app, client, make_client, make_staff, runner, caplog, anonymised):
    acme, key = make_client(name="Cli Org", anonymised=anonymised)
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    s = Scenario()
    _send(client, key, dt.datetime(2026, 6, 2, 9, tzinfo=dt.UTC), "Jane.Doe@Acme.example", "Doe, Jane", COURSES[0], s)
    _send(client, key, dt.datetime(2026, 6, 20, 9, tzinfo=dt.UTC), "001234", "Doe, Jane", COURSES[0], s)
    _send(client, key, dt.datetime(2026, 6, 21, 9, tzinfo=dt.UTC), "other@acme.example", "Roe, Rick", COURSES[0], s)
    assert _usage(client, token, acme.slug)["unique_users"] == 3

    merge = ["learner", "merge", "--client", acme.slug, "--student-id", " jane.doe@acme.EXAMPLE ", "--into", "001234",
             "--json"]
    result = runner.invoke(args=merge)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    usage = _usage(client, token, acme.slug)
    assert usage["unique_users"] == 2 and usage["courses"][0]["unique_users"] == 2
    assert usage["launches"] == 3, "a merge moves no launch and drops none"
    if anonymised:
        assert data["learner"].startswith("p:") and data["into"].startswith("p:")
        assert "jane" not in result.output.lower() and "1234" not in result.output
    else:
        assert (data["learner"], data["into"]) == ("jane.doe@acme.example", "001234")

    again = runner.invoke(args=merge)
    assert again.exit_code != 0 and "already" in again.output
    backwards = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", "001234", "--into",
                                    "jane.doe@acme.example"])
    assert backwards.exit_code != 0 and "already count as one" in backwards.output
    unknown = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", "nobody@acme.example",
                                  "--into", "001234"])
    assert unknown.exit_code != 0 and "no learner" in unknown.output
    assert _usage(client, token, acme.slug)["unique_users"] == 2, "refused merges changed nothing"

    result = runner.invoke(args=["learner", "unmerge", "--client", acme.slug, "--student-id", "jane.doe@acme.example",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert _usage(client, token, acme.slug)["unique_users"] == 3
    not_merged = runner.invoke(args=["learner", "unmerge", "--client", acme.slug, "--student-id", "001234"])
    assert not_merged.exit_code != 0 and "not merged" in not_merged.output
    if anonymised:
        _assert_nothing_plain(s, SmtpSinkless())
        assert not any(v in caplog.text for v in s.plain)


class SmtpSinkless:
    def texts(self) -> str:
        return ""


def test_cli_merge_proposals_bulk_with_dry_run(app, client, make_client, make_staff, runner):
    acme, key = make_client(name="Bulk Org", anonymised=True)
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    scenario = generate(client, key, seed=3)
    with time_machine.travel(CHECKED, tick=False):
        dry = runner.invoke(args=["learner", "merge-proposals", "--client", acme.slug, "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        data = json.loads(dry.output)
        assert data["merged"] == 0 and len(data["proposals"]) == 12
        assert data["effect"][0]["unique_users_before"] == IDENTITIES
        assert data["effect"][0]["unique_users_after"] == scenario.people
        assert _usage(client, token, acme.slug)["unique_users"] == IDENTITIES, "a dry run merges nothing"
        done = runner.invoke(args=["learner", "merge-proposals", "--client", acme.slug, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["merged"] == 12
    assert _usage(client, token, acme.slug)["unique_users"] == scenario.people


def test_chains_of_merges_count_once_and_undo_in_any_order(app, client, make_client, make_staff, login, runner):
    """An LMS that changed its scheme twice: A → B → C is one person; undoing B → C leaves A → B."""
    acme, key = make_client(name="Chain Org")
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    s = Scenario()
    for day, student_id in ((2, "pat@acme.example"), (10, "pat.s"), (20, "778899")):
        _send(client, key, dt.datetime(2026, 6, day, 9, tzinfo=dt.UTC), student_id, "Smith, Pat", COURSES[0], s)

    def merge(old, into):
        result = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", old, "--into", into])
        assert result.exit_code == 0, result.output

    merge("pat@acme.example", "pat.s")
    merge("pat.s", "778899")
    assert _usage(client, token, acme.slug)["unique_users"] == 1
    login(make_staff("csm"))
    rows = _learners_csv(client, acme.slug)
    assert [r["student_id"] for r in rows] == ["778899"] and rows[0]["launches"] == "3"
    result = runner.invoke(args=["learner", "unmerge", "--client", acme.slug, "--student-id", "pat.s"])
    assert result.exit_code == 0, result.output
    assert _usage(client, token, acme.slug)["unique_users"] == 2
    merge("pat.s", "778899")
    runner.invoke(args=["learner", "unmerge", "--client", acme.slug, "--student-id", "pat@acme.example"])
    assert _usage(client, token, acme.slug)["unique_users"] == 2


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_erasing_one_identity_of_a_merged_person_erases_both(app, client, make_client, make_staff, runner,
                                                             anonymised):
    acme, key = make_client(name="Erase Org", anonymised=anonymised)
    token = staff_service.create_token(db.session, make_staff("billing"), actor="test")
    s = Scenario()
    _send(client, key, dt.datetime(2026, 6, 2, 9, tzinfo=dt.UTC), "jane@acme.example", "Doe, Jane", COURSES[0], s)
    _send(client, key, dt.datetime(2026, 6, 20, 9, tzinfo=dt.UTC), "004711", "Doe, Jane", COURSES[1], s)
    _send(client, key, dt.datetime(2026, 6, 21, 9, tzinfo=dt.UTC), "rick@acme.example", "Roe, Rick", COURSES[0], s)
    result = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", "jane@acme.example",
                                 "--into", "004711"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "004711", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["erased"] == 2, result.output
    usage = _usage(client, token, acme.slug)
    assert usage["unique_users"] == 1 and usage["launches"] == 1
    assert db.session.query(LearnerMerge).count() == 0
    # The audit log keeps the merge, and names no student: an entry outlives the erasure.
    audited = json.dumps([[a.before, a.after] for a in db.session.scalars(
        select(AuditEntry).where(AuditEntry.action.in_(["learner.merge", "learner.unmerge"])))])
    assert "learner" in audited and "jane" not in audited and "004711" not in audited
