"""Webhooks end to end: beacons in, signed deliveries out to a real HTTPS receiver that
verifies each one with the ``standardwebhooks`` package; back-off, dead letters, replay,
URL checks. Time is travelled (time-machine), never waited for."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
import time_machine
from conftest import beacon_body, csrf_token_from
from cryptography.fernet import Fernet, InvalidToken
from outbox_helpers import Receiver
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEntry
from app.outbound import outbox, webhooks
from app.outbound.models import OutboxDelivery, OutboxEvent

BEACONS = "/api/v1/beacons"
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def app_config(app_config, tls_ca):
    return {**app_config, "WEBHOOK_CA_FILE": tls_ca["ca"]}


@pytest.fixture
def receiver(tls_ca):
    made = []

    def factory(**kwargs):
        made.append(Receiver(tls_ca, **kwargs))
        return made[-1]

    yield factory
    for r in made:
        r.stop()


def _endpoint(runner, url, *args):
    result = runner.invoke(args=["webhook", "add", "--url", url, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _settings(app):
    return outbox.Settings.from_config(app.config)


def _send(client, key, **fields):
    response = client.post(BEACONS, json=beacon_body(key, **fields))
    assert response.status_code == 204, response.get_data(as_text=True)


def test_receiver_down_then_up_gets_every_event_once_signed_with_spaced_retries(app, client, runner, make_client,
                                                                             receiver):
    acme, key = make_client(name="Acme")
    down_until = START + dt.timedelta(minutes=10)
    hook = receiver(status=lambda n: 500 if dt.datetime.now(dt.UTC) < down_until else 200)
    hook.secret = _endpoint(runner, hook.url)["secret"]
    assert hook.secret.startswith("whsec_")

    with time_machine.travel(START, tick=False) as traveller:
        _send(client, key, student_id="s-1", course="Fire Safety")                    # enrolled
        _send(client, key, student_id="s-1", course="Fire Safety")                    # a return: no event
        _send(client, key, student_id="s-1", course="Fire Safety", event="completed")
        _send(client, key, student_id="s-2", course="Fire Safety")                    # enrolled
        _send(client, key, student_id="s-2", course="Fire Safety", event="failed")
        _send(client, key, student_id="s-2", course="Fire Safety", event="passed")
        for _ in range(400):
            outbox.run_once(db.session, _settings(app))
            if db.session.scalar(select(OutboxDelivery.id).where(OutboxDelivery.status != "delivered")) is None:
                break
            traveller.shift(5)

    events = {e.webhook_id: e for e in db.session.scalars(select(OutboxEvent))}
    assert sorted(e.type for e in events.values()) == sorted(
        ["learner.enrolled", "learner.enrolled", "learner.completed", "learner.failed", "learner.passed"])
    assert all(r.verified for r in hook.received), "every delivery carries a valid Standard Webhooks signature"
    delivered = hook.delivered_ids()
    assert sorted(delivered) == sorted(events), "every event arrives, each webhook-id once"
    assert any(r.status == 500 for r in hook.received)

    for webhook_id in events:
        tries = [r.at for r in hook.received if r.webhook_id == webhook_id]
        gaps = [b - a for a, b in zip(tries, tries[1:])]
        assert len(tries) >= 3
        assert gaps[0] <= 30, "the first retry comes within 30 seconds"
        assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:])), f"retries spread out: {gaps}"

    completed = next(r.body for r in hook.received if r.body and r.body["type"] == "learner.completed"
                     and r.status == 200)
    assert completed["data"] == {
        "client": acme.slug, "course": "Fire Safety", "learner": "s-1", "learner_pseudonymised": False,
        "first_enrolled_at": START.isoformat(), "first_completed_at": START.isoformat(),
        "course_enrolments": 2, "course_completions": 2,
    }
    assert completed["data"]["learner"] == "s-1" and completed["data"]["first_enrolled_at"] == START.isoformat()


def test_learner_totals_are_as_of_each_event_however_late_the_worker_sends_them(app, client, runner,
                                                                                make_client, receiver):
    acme, key = make_client(name="Acme")
    hook = receiver()
    hook.secret = _endpoint(runner, hook.url)["secret"]
    with time_machine.travel(START, tick=False) as traveller:
        for n in range(1, 10):  # nine learners enrol a minute apart; nothing is sent yet
            _send(client, key, student_id=f"s-{n}", course="Fire Safety")
            traveller.shift(60)
        _send(client, key, student_id="s-1", course="Fire Safety", event="completed")
        for _ in range(5):
            outbox.run_once(db.session, _settings(app))
    bodies = [r.body for r in hook.received if r.body and r.status == 200]
    enrolled = {b["data"]["learner"]: b["data"] for b in bodies if b["type"] == "learner.enrolled"}
    assert {learner: d["course_enrolments"] for learner, d in enrolled.items()} == {
        f"s-{n}": n for n in range(1, 10)}, "each enrolment counts the learners enrolled until then"
    assert all(d["course_completions"] == 0 and d["first_completed_at"] is None for d in enrolled.values()), \
        "a completion after the enrolment is not in the enrolment's figures"
    completed = next(b["data"] for b in bodies if b["type"] == "learner.completed")
    assert (completed["course_enrolments"], completed["course_completions"]) == (9, 1)
    assert completed["first_completed_at"] == (START + dt.timedelta(minutes=9)).isoformat()


def test_a_stopping_worker_gives_back_the_deliveries_it_has_not_tried(app, client, runner, make_client, receiver):
    """SIGTERM between two deliveries: the rest are due again at once (not after their lease) and
    their attempt is not counted, so another worker sends them straight away."""
    _acme, key = make_client(name="Acme")
    hook = receiver(status=200)
    hook.secret = _endpoint(runner, hook.url)["secret"]
    with time_machine.travel(START, tick=False):
        for n in range(3):
            _send(client, key, student_id=f"s-{n}", course="Fire Safety")
        outbox.fan_out(db.session, START)
        asked = []
        tried = outbox.deliver_due(db.session, _settings(app), outbox.utc_clock,
                                   should_stop=lambda: asked.append(1) or len(asked) > 1)
        assert tried == 1 and len(hook.received) == 1
        db.session.rollback()
        waiting = list(db.session.scalars(select(OutboxDelivery).where(OutboxDelivery.status == "pending")))
        assert len(waiting) == 2
        assert all(d.attempts == 0 and d.next_attempt_at <= START for d in waiting)
        assert outbox.deliver_due(db.session, _settings(app), outbox.utc_clock) == 2
    assert sorted(hook.delivered_ids()) == sorted(e.webhook_id for e in db.session.scalars(select(OutboxEvent)))


def test_a_paused_endpoint_gets_nothing_until_it_is_resumed(app, client, runner, make_client, make_staff, login,
                                                             receiver):
    _acme, key = make_client(name="Acme")
    hook = receiver(status=200)
    endpoint = _endpoint(runner, hook.url)
    hook.secret = endpoint["secret"]
    paused = runner.invoke(args=["webhook", "pause", str(endpoint["id"])])
    assert paused.exit_code == 0 and "paused" in paused.output
    listed = json.loads(runner.invoke(args=["webhook", "list", "--json"]).output)
    assert listed == [{"id": endpoint["id"], "url": hook.url, "client": None, "events": [], "active": False}]
    assert "whsec_" not in runner.invoke(args=["webhook", "list"]).output
    assert runner.invoke(args=["webhook", "pause", "999"]).exit_code != 0

    with time_machine.travel(START, tick=False):
        _send(client, key, student_id="s-1", course="Fire Safety")
        for _ in range(3):
            outbox.run_once(db.session, _settings(app))
        assert hook.received == [], "nothing goes to a paused endpoint"
        # Resumed from the admin (CSRF-checked form): what waited goes out, once.
        login(make_staff("admin"))
        page = client.get(f"/admin/webhooks/{endpoint['id']}").get_data(as_text=True)
        assert "paused" in page and "Resume this endpoint" in page
        assert client.post(f"/admin/webhooks/{endpoint['id']}/active", data={"active": "1"}).status_code == 400
        resumed = client.post(f"/admin/webhooks/{endpoint['id']}/active",
                              data={"active": "1", "csrf_token": csrf_token_from(page)})
        assert resumed.status_code == 302
        outbox.run_once(db.session, _settings(app))
    assert [r.body["type"] for r in hook.received if r.status == 200] == ["learner.enrolled"]
    actions = [e.action for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert [a for a in actions if a.startswith("webhook.")] == ["webhook.add", "webhook.pause", "webhook.resume"]


def test_never_recovering_receiver_is_dead_lettered_after_three_days_and_replayed_from_the_admin(
        app, client, runner, make_client, make_staff, login, receiver):
    _, key = make_client(name="Acme")
    hook = receiver(status=500)
    hook.secret = _endpoint(runner, hook.url, "--event", "learner.enrolled")["secret"]
    with time_machine.travel(START, tick=False) as traveller:
        _send(client, key, student_id="s-1")
        _send(client, key, student_id="s-1", event="completed")  # not subscribed
        for _ in range(200):
            outbox.run_once(db.session, _settings(app))
            delivery = db.session.scalar(select(OutboxDelivery))
            if delivery.status == "dead":
                break
            traveller.shift(dt.timedelta(minutes=30))
        assert delivery.status == "dead"
        tries = [r.at for r in hook.received]
        assert tries[-1] - tries[0] >= 3 * 86400, "retried for at least three days"
        assert max(b - a for a, b in zip(tries, tries[1:])) <= 6 * 3600 + 1800
        assert len({r.webhook_id for r in hook.received}) == 1, "the same webhook-id on every retry"

        csm = make_staff("csm")
        login(csm)
        page = client.get("/admin/webhooks")
        assert page.status_code == 200 and hook.url in page.get_data(as_text=True)
        detail = client.get(f"/admin/webhooks/{delivery.endpoint_id}").get_data(as_text=True)
        assert "dead" in detail and "HTTP 500" in detail and "Replay" in detail
        refused = client.post(f"/admin/webhooks/deliveries/{delivery.id}/replay",
                              headers={"Referer": "https://localhost/admin/webhooks"})
        assert refused.status_code == 400, "replay without a CSRF token changes nothing"
        hook.status = 200
        response = client.post(f"/admin/webhooks/deliveries/{delivery.id}/replay",
                               data={"csrf_token": csrf_token_from(detail)},
                               headers={"Referer": "https://localhost/admin/webhooks"})
        assert response.status_code == 302
        outbox.run_once(db.session, _settings(app))
    db.session.expire_all()
    assert db.session.get(OutboxDelivery, delivery.id).status == "delivered"
    assert hook.delivered_ids() == [hook.received[0].webhook_id]


def test_a_redirect_is_never_followed(app, client, runner, make_client, receiver):
    _, key = make_client(name="Acme")
    hook = receiver(status=302, redirect_to="https://169.254.169.254/latest/meta-data/")
    hook.secret = _endpoint(runner, hook.url)["secret"]
    _send(client, key)
    outbox.run_once(db.session, _settings(app))
    delivery = db.session.scalar(select(OutboxDelivery))
    assert delivery.status == "pending" and "redirects are not followed" in delivery.last_error
    assert len(hook.received) == 1


def _resolver(*addresses):
    def resolve(host, port, proto=0):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, proto, "", (a, port))
                for a in addresses]
    return resolve


@pytest.mark.parametrize("url, production, addresses, problem", [
    ("http://hooks.example.com/x", True, ["93.184.216.34"], "https://"),
    ("http://127.0.0.1:9000/x", True, ["127.0.0.1"], "https://"),
    ("http://hooks.example.com/x", False, ["93.184.216.34"], "https://"),
    ("https://internal.example.com/", True, ["10.1.2.3"], "private"),
    ("https://meta.example.com/", True, ["169.254.169.254"], "link-local"),
    ("https://v6.example.com/", True, ["fe80::1"], "private"),
    ("https://mapped.example.com/", True, ["::ffff:192.168.0.1"], "private"),
    ("https://mixed.example.com/", True, ["93.184.216.34", "172.16.0.5"], "private"),
    ("https://localhost/", True, ["127.0.0.1"], "private"),
    ("ftp://hooks.example.com/", True, ["93.184.216.34"], "https://"),
    ("https://user:pw@hooks.example.com/", True, ["93.184.216.34"], "password"),
    ("https://nowhere.invalid/", True, [], "does not resolve"),
    ("https://exa mple.com/", False, ["93.184.216.34"], "spaces"),
    ("https://hooks.example.com/x\ny", False, ["93.184.216.34"], "spaces"),
    ("https://hooks_ex!ample.com/", False, ["93.184.216.34"], "not a host name"),
    ("https://hooks.example.com:99999/", False, ["93.184.216.34"], "not a valid address"),
    ("https://hooks.example.com/x#frag", False, ["93.184.216.34"], "fragment"),
])
def test_endpoint_urls_refused(url, production, addresses, problem):
    with pytest.raises(webhooks.EndpointError, match=problem):
        webhooks.check_url(url, production=production, resolve=_resolver(*addresses))


@pytest.mark.parametrize("url, production, addresses", [
    ("https://hooks.example.com/tracker", True, ["93.184.216.34"]),
    ("http://127.0.0.1:9000/x", False, []),
    ("http://localhost:9000/x", False, []),
    ("https://10.0.0.5/dev", False, []),
])
def test_endpoint_urls_accepted(url, production, addresses):
    assert webhooks.check_url(url, production=production, resolve=_resolver(*addresses)) == url


def test_delivery_refuses_a_host_that_now_resolves_privately():
    result = webhooks.post("https://rebound.example.com/", secret=webhooks.new_secret(), webhook_id="msg_1",
                           timestamp=1, body="{}", production=True, resolve=_resolver("10.0.0.7"))
    assert not result.ok and "private" in result.detail


def test_cli_refuses_bad_endpoint_and_unknown_event_and_stores_nothing(app, runner):
    bad = runner.invoke(args=["webhook", "add", "--url", "http://hooks.example.com/x"])
    assert bad.exit_code != 0 and "https://" in bad.output
    unknown = runner.invoke(args=["webhook", "add", "--url", "https://127.0.0.1/x", "--event", "learner.sneezed"])
    assert unknown.exit_code != 0
    from app.outbound.models import WebhookEndpoint
    assert db.session.scalar(select(WebhookEndpoint.id)) is None


def test_signature_matches_the_standard_webhooks_reference():
    from standardwebhooks.webhooks import Webhook

    secret = webhooks.new_secret()
    body = '{"type":"learner.enrolled"}'
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert webhooks.sign(secret, "msg_x", int(when.timestamp()), body) == Webhook(secret).sign("msg_x", when, body)


def test_admin_adds_an_endpoint_and_sees_the_secret_once(app, client, make_client, make_staff, login):
    acme, _ = make_client(name="Acme")
    login(make_staff("admin"))
    page = client.get("/admin/webhooks")
    token = csrf_token_from(page.get_data(as_text=True))
    referer = {"Referer": "https://localhost/admin/webhooks"}
    made = client.post("/admin/webhooks", headers=referer, data={
        "csrf_token": token, "url": "https://127.0.0.1:9443/hooks", "client": acme.slug,
        "events": "learner.enrolled licence.threshold"})
    html = made.get_data(as_text=True)
    from app.outbound.models import WebhookEndpoint
    endpoint = db.session.scalar(select(WebhookEndpoint))
    assert made.status_code == 200 and endpoint.secret in html
    assert (endpoint.client_id, endpoint.event_types) == (acme.id, ["learner.enrolled", "licence.threshold"])
    assert endpoint.secret not in client.get("/admin/webhooks").get_data(as_text=True), "shown once"
    unknown = client.post("/admin/webhooks", headers=referer,
                          data={"csrf_token": token, "url": "https://127.0.0.1/x", "events": "learner.sneezed"})
    assert unknown.status_code == 400 and "unknown event type" in unknown.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 1


def test_a_returning_learners_launch_adds_no_outbox_statement(app, client, make_client):
    from sqlalchemy import event

    _, key = make_client(name="Acme")
    _send(client, key, student_id="s-1")
    _send(client, key, student_id="s-1")  # the enrolment conflicts once: now known
    seen = []

    def spy(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", spy)
    try:
        _send(client, key, student_id="s-1")
        assert not any("outbox_events" in s for s in seen), "a known enrolment skips the INSERT"
        seen.clear()
        _send(client, key, student_id="s-1", event="completed")
        assert sum("outbox_events" in s for s in seen) == 1, "a status is one INSERT"
    finally:
        event.remove(db.engine, "before_cursor_execute", spy)
    assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 2


def test_erasure_removes_the_learners_webhook_events_and_bodies(app, client, runner, make_client):
    acme, key = make_client(name="Acme")
    runner.invoke(args=["webhook", "add", "--url", "https://127.0.0.1:9/unused"])
    _send(client, key, student_id="erase.me@acme.example")
    _send(client, key, student_id="erase.me@acme.example", event="completed")
    _send(client, key, student_id="keep@acme.example")
    outbox.fan_out(db.session, dt.datetime.now(dt.UTC))
    assert any("erase.me" in d.body for d in db.session.scalars(select(OutboxDelivery)))
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "Erase.Me@acme.example"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    bodies = [d.body for d in db.session.scalars(select(OutboxDelivery))]
    assert len(bodies) == 1 and "keep@acme.example" in bodies[0]
    assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 1


# --- internal addresses in IPv6 spellings (issue 18) --------------------------------------

EMBEDDED_INTERNAL = [
    "https://[::127.0.0.1]/hook",          # IPv4-compatible loopback
    "https://[::ffff:127.0.0.1]/hook",     # IPv4-mapped
    "https://[::ffff:0:a00:1]/hook",       # IPv4-translated 10.0.0.1
    "https://[64:ff9b::a00:1]/hook",       # NAT64 of 10.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/hook",   # NAT64 of the cloud metadata address
    "https://[64:ff9b:1::a00:1]/hook",     # local-use NAT64
    "https://[2002:a00:1::1]/hook",        # 6to4 of 10.0.0.1
    "https://[2002:7f00:1::1]/hook",       # 6to4 of 127.0.0.1
    "https://2130706433/hook",             # 127.0.0.1 as one number
    "https://0x7f.1/hook",                 # 127.0.0.1 in hex and short form
]


@pytest.mark.parametrize("url", EMBEDDED_INTERNAL)
def test_internal_addresses_in_any_spelling_are_refused_at_registration(url):
    """The system's own resolver reads each literal, as it would at delivery."""
    with pytest.raises(webhooks.EndpointError, match="private"):
        webhooks.check_url(url, production=True)


@pytest.mark.parametrize("url", EMBEDDED_INTERNAL)
def test_internal_addresses_in_any_spelling_are_refused_at_delivery(url):
    result = webhooks.post(url, secret=webhooks.new_secret(), webhook_id="msg_1", timestamp=1, body="{}",
                           production=True)
    assert not result.ok and "private" in result.detail


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "93.184.216.34",
                                     "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_in_those_spellings_are_accepted(address):
    assert webhooks.public_address(address)


def test_the_address_actually_connected_to_is_checked_before_anything_is_sent(tls_ca):
    """Whatever a resolver said, the socket's peer is checked: a loopback peer gets no byte."""
    import ssl
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    received = []

    def serve():
        peer, _ = listener.accept()
        with peer:
            received.append(peer.recv(1))

    accepted = threading.Thread(target=serve, daemon=True)
    accepted.start()
    connection = webhooks._PinnedHTTPSConnection("hooks.example.com", listener.getsockname()[1], "127.0.0.1",
                                                 ssl.create_default_context(), 5, production=True)
    with pytest.raises(webhooks.RefusedAddress, match="connected to 127.0.0.1"):
        connection.connect()
    accepted.join(10)
    listener.close()
    assert received == [b""], "the server saw the connection close without a byte (no TLS hello, no body)"


# --- signing secrets encrypted at rest (issue 18) -----------------------------------------


def _raw_secrets() -> list[str]:
    """The column as the database holds it, bypassing the model's decryption."""
    db.session.rollback()
    return list(db.session.execute(text("SELECT secret FROM webhook_endpoints ORDER BY id")).scalars())


def test_a_signing_secret_is_never_stored_plain_and_still_signs(app, runner, client, make_client, receiver):
    _, key = make_client(name="Acme")
    hook = receiver()
    made = _endpoint(runner, hook.url)
    hook.secret = made["secret"]
    raw = _raw_secrets()
    assert len(raw) == 1 and made["secret"] not in raw[0] and "whsec_" not in raw[0]
    secret_bytes = made["secret"].removeprefix("whsec_")
    assert secret_bytes not in raw[0]
    assert Fernet(app.config["WEBHOOK_SECRET_KEYS"][0]).decrypt(raw[0].encode()).decode() == made["secret"]
    _send(client, key, student_id="s-1")
    outbox.run_once(db.session, _settings(app))
    assert [(r.verified, r.body["type"]) for r in hook.received] == [(True, "learner.enrolled")]


def test_key_rotation_reencrypts_every_secret(app, runner):
    made = _endpoint(runner, "https://127.0.0.1:9/a")
    old_key = app.config["WEBHOOK_SECRET_KEYS"][0]
    new_key = Fernet.generate_key().decode()
    app.config["WEBHOOK_SECRET_KEYS"] = [new_key, old_key]
    app.extensions.pop("secretbox", None)
    result = runner.invoke(args=["webhook", "reencrypt"])
    assert result.exit_code == 0 and "Re-encrypted 1" in result.output, result.output
    raw = _raw_secrets()[0]
    assert Fernet(new_key).decrypt(raw.encode()).decode() == made["secret"]
    with pytest.raises(InvalidToken):
        Fernet(old_key).decrypt(raw.encode())


def test_the_migration_encrypts_secrets_stored_plain(tmp_path):
    """A database at the revision before, with a plaintext secret, upgraded: the secret is a token."""
    from conftest import ROOT, _config
    from flask_migrate import downgrade, upgrade

    from app import create_app

    url = f"sqlite:///{tmp_path / 'old.db'}"
    application = create_app(_config(url))
    with application.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="8a08ecabce64")
        plain = webhooks.new_secret()
        db.session.execute(text("INSERT INTO webhook_endpoints (url, secret, event_types, active, created_at) "
                                "VALUES ('https://hooks.example.com/', :s, '[]', 1, '2026-01-01 00:00:00')"),
                           {"s": plain})
        db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        stored = db.session.execute(text("SELECT secret FROM webhook_endpoints")).scalar_one()
        assert plain not in stored
        from app.outbound.models import WebhookEndpoint
        assert db.session.scalar(select(WebhookEndpoint)).secret == plain
        db.session.rollback()
        downgrade(directory=str(ROOT / "migrations"), revision="8a08ecabce64")
        assert db.session.execute(text("SELECT secret FROM webhook_endpoints")).scalar_one() == plain
        db.session.remove()
        db.engine.dispose()
