"""Licence alerts by e-mail through a real SMTP server (aiosmtpd): thresholds, forecast,
term ending and leak, each once per term, to the vendor's CSMs and opted-in admins (and licence alerts to
the client's contacts: a leak is the vendor's to act on), with no
plain learner data for anonymised clients (in the mail, the outbox, or webhook bodies)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from conftest import beacon_body
from outbox_helpers import run_outbox
from sqlalchemy import select

from app.billing import figures as billing
from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.outbound.models import OutboxDelivery, OutboxEvent
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"
START = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def app_config(app_config, smtp):
    return {**app_config, "SMTP_URL": smtp.url, "MAIL_FROM": "tracker@vendor.example"}


def test_threshold_term_ending_and_leak_mails_once_each_to_staff_and_licence_ones_to_contacts(app, client, runner, make_client,
                                                                           make_staff, smtp):
    acme, key = make_client(name="Acme", anonymised=True, origins=["https://lms.acme.example"])
    make_staff("csm", email="csm@vendor.example")  # Acme has no CSM: every CSM gets its alerts
    admin = make_staff("admin", email="admin@vendor.example")
    staff_service.update_staff(db.session, admin, actor="test", all_client_alerts=True)
    make_staff("admin", email="quiet-admin@vendor.example")  # not opted in: no alerts
    make_staff("billing", email="billing@vendor.example")  # not an alert recipient
    licences.set_contacts(db.session, acme, ["Ops@Acme.example"], actor="test")
    result = runner.invoke(args=["licence", "add-term", "--client", acme.slug, "--start", "2026-01-01",
                                 "--end", "2026-05-31", "--seat-limit", "10"])
    assert result.exit_code == 0, result.output
    runner.invoke(args=["webhook", "add", "--url", "https://127.0.0.1:9/unused"])  # bodies stored, never sent
    plain = [(f"jane.plain{i}@acme.example", f"Plainname{i}, Jane") for i in range(12)]
    lms = {"Origin": "https://lms.acme.example"}
    with time_machine.travel(START, tick=False):
        for student_id, name in plain[:7]:
            assert client.post(BEACONS, json=beacon_body(key, student_id=student_id, student_name=name),
                               headers=lms).status_code == 204
        run_outbox(app)
        assert not any("seats" in s for s in smtp.by_subject()), "70 % is below every threshold"
        for student_id, name in plain[7:]:
            client.post(BEACONS, json=beacon_body(key, student_id=student_id, student_name=name), headers=lms)
            run_outbox(app)
        for student_id, name in plain:  # everyone again: no alert twice
            client.post(BEACONS, json=beacon_body(key, student_id=student_id, student_name=name, event="passed"),
                        headers=lms)
        for _ in range(2):
            copied = client.post(BEACONS, json=beacon_body(key, student_id=plain[0][0], student_name=plain[0][1]),
                                 headers={"Origin": "https://copied.example.net"})
            assert copied.status_code == 403
        run_outbox(app)

    subjects = smtp.by_subject()
    staff = ["admin@vendor.example", "csm@vendor.example"]
    everyone = [*staff, "ops@acme.example"]
    for subject in ("Acme has passed 80 % of its seats", "Acme has passed 90 % of its seats",
                    "Acme has reached its seat limit"):
        assert sorted(subjects.pop(subject)) == everyone
    assert sorted(subjects.pop("Acme's licence term ends on 2026-05-31")) == everyone
    # A copied package is the vendor's to chase: the client's contacts are not told of it.
    assert sorted(subjects.pop("Beacons from an LMS not on Acme's list")) == staff
    # 7 new learners in the last 14 days with 27 days to go: the forecast passes 10 seats.
    assert sorted(subjects.pop("Acme is likely to pass its seat limit")) == everyone
    assert subjects == {}, f"nothing else, nothing twice: {subjects}"
    assert "https://copied.example.net" in smtp.texts()
    assert all(m["From"] == "tracker@vendor.example" for _, m in smtp.messages)

    stored = smtp.texts() + json.dumps([e.facts for e in db.session.scalars(select(OutboxEvent))]) + "".join(
        d.body for d in db.session.scalars(select(OutboxDelivery)))
    assert "learner.passed" in stored and "learner.enrolled" in stored
    for student_id, name in plain:
        assert student_id not in stored.lower() and "plainname" not in stored.lower(), "no plain learner data"


def test_forecast_over_the_limit_mails_once(app, client, make_client, make_staff, smtp):
    beta, key = make_client(name="Beta")
    make_staff("csm", email="csm@vendor.example")
    licence_terms.add_term(db.session, beta, actor="test", starts_on=dt.date(2026, 1, 1), ends_on=dt.date(2026, 12, 31),
                           seat_limit=500)
    with time_machine.travel(dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC), tick=False) as traveller:
        learner = 0
        for day in range(20):  # 5 new learners a day: about 1800 by the end of the year
            for _ in range(5):
                learner += 1
                client.post(BEACONS, json=beacon_body(key, student_id=f"b{learner}"))
            run_outbox(app, rounds=1)
            traveller.shift(dt.timedelta(days=1))
        run_outbox(app)
    subjects = smtp.by_subject()
    assert subjects.pop("Beta is likely to pass its seat limit") == ["csm@vendor.example"]
    assert subjects == {}
    text = smtp.texts()
    assert "90 % likely between" in text and "35 of 500 seats" in text, "raised on day 7, once"


def test_renewed_term_alerts_again(app, client, make_client, make_staff, smtp):
    gamma, key = make_client(name="Gamma")
    make_staff("csm", email="csm@vendor.example")
    term = licence_terms.add_term(db.session, gamma, actor="test", starts_on=dt.date(2026, 1, 1),
                                  ends_on=dt.date(2026, 1, 31), seat_limit=2)
    licence_terms.renew_term(db.session, gamma, term, actor="test")
    for when in (dt.datetime(2026, 1, 5, tzinfo=dt.UTC), dt.datetime(2026, 2, 5, tzinfo=dt.UTC)):
        with time_machine.travel(when, tick=False):
            for i in range(3):
                client.post(BEACONS, json=beacon_body(key, student_id=f"g{i}"))
            run_outbox(app)
    seats = {s: to for s, to in smtp.by_subject().items() if "seat" in s}
    assert seats == {"Gamma is over its seat limit (3 of 2 seats)": ["csm@vendor.example"] * 2}, \
        "one message (the highest threshold) in each term"


def test_mail_server_down_retries_then_sends_and_admin_lists_it(app, client, make_client, make_staff, login, smtp):
    from conftest import csrf_token_from

    delta, key = make_client(name="Delta", origins=["https://lms.delta.example"])
    csm = make_staff("csm", email="csm@vendor.example")
    real_url = app.config["SMTP_URL"]
    app.config["SMTP_URL"] = "smtp://127.0.0.1:9"  # nothing listens there
    start = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        client.post(BEACONS, json=beacon_body(key), headers={"Origin": "https://elsewhere.example"})
        run_outbox(app)
        delivery = db.session.scalar(select(OutboxDelivery).where(OutboxDelivery.channel == "email"))
        assert delivery.status == "pending" and delivery.attempts == 1 and smtp.messages == []
        login(csm)
        page = client.get("/admin/webhooks").get_data(as_text=True)
        assert "Beacons from an LMS not on Delta" in page and "retrying" in page
        app.config["SMTP_URL"] = real_url
        traveller.shift(11)
        run_outbox(app)
    assert [rcpts for rcpts, _ in smtp.messages] == [["csm@vendor.example"]]
    assert csrf_token_from(page)


def _create(runner, *args) -> dict:
    result = runner.invoke(args=["client", "create", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _client_row(slug):
    from app.models import Client

    return db.session.scalar(select(Client).where(Client.slug == slug))


def test_client_create_seat_limit_alerts_and_enforces_like_a_term_from_add_term(app, client, runner, make_staff,
                                                                               smtp):
    make_staff("csm", email="csm@vendor.example")
    today = dt.datetime.now(dt.UTC).date()
    made = _create(runner, "--name", "Acme", "--seat-limit", "10")
    beta = _create(runner, "--name", "Beta")
    added = runner.invoke(args=["licence", "add-term", "--client", beta["slug"], "--start", today.isoformat(),
                                "--end", made["term"]["ends_on"], "--seat-limit", "10"])
    assert added.exit_code == 0, added.output
    for data in (made, beta):
        for i in range(11):  # one learner at a time: each threshold is crossed on its own
            assert client.post(BEACONS, json=beacon_body(data["key"], student_id=f"{data['slug']}-{i}")
                               ).status_code == 204
            run_outbox(app)
    subjects = smtp.by_subject()
    for name in ("Acme", "Beta"):  # the same alerts, once each, for both kinds of term
        for subject in (f"{name} has passed 80 % of its seats", f"{name} has passed 90 % of its seats",
                        f"{name} has reached its seat limit"):
            assert subjects.pop(subject) == ["csm@vendor.example"], subject
    assert not [s for s in subjects if "seat" in s], subjects
    # The term is enforced: the 11th learner was recorded and flagged as over the limit.
    acme = _client_row(made["slug"])
    decision = licences.launch_decision(db.session, acme.id, "someone-new", today, remote=False)
    assert decision.over_limit and decision.reason == "over_limit"
    assert billing.seat_limit(db.session, acme, today) == 10


def test_a_jump_from_0_to_130_percent_is_one_message_with_the_true_numbers(app, client, runner, make_staff, smtp):
    make_staff("csm", email="csm@vendor.example")
    gamma = _create(runner, "--name", "Gamma", "--seat-limit", "10")
    for i in range(13):
        client.post(BEACONS, json=beacon_body(gamma["key"], student_id=f"g{i}"))
    run_outbox(app)
    for i in range(13, 15):  # more learners later: no second seat alert
        client.post(BEACONS, json=beacon_body(gamma["key"], student_id=f"g{i}"))
        run_outbox(app)
    seats = [(subject, message) for subject, message in ((m["Subject"], m) for _, m in smtp.messages)
             if "seat" in subject]
    assert [subject for subject, _ in seats] == ["Gamma is over its seat limit (13 of 10 seats)"]
    text = smtp.texts()
    assert "13 learner(s) counted against a limit of 10 seat(s)" in text and "130 % of the seats" in text
    assert "80 %" not in text and "90 %" not in text
