"""The webhook deliveries page (/admin/webhooks/<id>): each delivery's client, event type and payload,
filters by state and event type, fixed-size pages, replay; bad filters are a clear 400. Deliveries are
made the real way: beacons in, the outbox worker sending to a real HTTPS receiver."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape

import pytest
import time_machine
from conftest import beacon_body, csrf_token_from
from outbox_helpers import Receiver
from sqlalchemy import select

from app.admin.webhook_deliveries import PAGE_SIZE
from app.extensions import db
from app.outbound import outbox
from app.outbound.models import OutboxDelivery

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
ACME_LEARNERS = PAGE_SIZE + 2


@pytest.fixture
def app_config(app_config, tls_ca):
    return {**app_config, "WEBHOOK_CA_FILE": tls_ca["ca"]}


@pytest.fixture
def hook(tls_ca):
    receiver = Receiver(tls_ca, status=200)
    yield receiver
    receiver.stop()


def _send(client, key, **fields):
    response = client.post("/api/v1/beacons", json=beacon_body(key, **fields))
    assert response.status_code == 204, response.get_data(as_text=True)


def _run(app):
    outbox.run_once(db.session, outbox.Settings.from_config(app.config))


def rows(html: str) -> list[str]:
    """Each delivery row's HTML, entities decoded (the payload is shown as text)."""
    return [unescape(r) for r in re.findall(r'<tr data-delivery="\d+">(.*?)</tr>', html, re.S)]


@pytest.fixture
def world(app, client, runner, make_client, hook):
    """Acme (verbatim): PAGE_SIZE + 2 enrolments and a completion, delivered. Beta (anonymised): one
    enrolment refused by the receiver (failed), then one while the endpoint is paused (waiting)."""
    acme, acme_key = make_client(name="Acme")
    beta, beta_key = make_client(name="Beta", anonymised=True)
    added = runner.invoke(args=["webhook", "add", "--url", hook.url, "--json"])
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.output)
    hook.secret = endpoint["secret"]
    with time_machine.travel(START, tick=False):
        for n in range(ACME_LEARNERS):
            _send(client, acme_key, student_id=f"acme-{n}", course="Fire Safety")
        _send(client, acme_key, student_id="acme-0", course="Fire Safety", event="completed")
        for _ in range(10):
            _run(app)
        hook.status = 500
        _send(client, beta_key, student_id="beta-learner-one", student_name="Quill, Petra", course="Ethics")
        _run(app)
        assert runner.invoke(args=["webhook", "pause", str(endpoint["id"])]).exit_code == 0
        _send(client, beta_key, student_id="beta-learner-two", student_name="Quill, Petra", course="Ethics")
        _run(app)
    return endpoint["id"]


def test_deliveries_show_client_type_and_payload_filtered_and_paged(app, client, login, make_staff, world, hook):
    login(make_staff("csm"))
    url = f"/admin/webhooks/{world}"
    total = ACME_LEARNERS + 1 + 2
    first = client.get(url)
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    assert f"{total} deliveries" in html and "page 1 of 2" in html
    shown = rows(html)
    assert len(shown) == PAGE_SIZE
    # Failed and waiting first, with their client; the payload is in a collapsed <details>.
    assert "failed · retrying" in shown[1] and "Beta" in shown[1] and "HTTP 500" in shown[1]
    assert "waiting" in shown[0] and "Beta" in shown[0]
    assert all("Acme" in r and "learner." in r for r in shown[2:])
    payload = re.search(r'<details class="payload"><summary>Payload</summary><pre>(.*?)</pre></details>', shown[2],
                        re.S).group(1)
    assert json.loads(payload)["data"]["client"] == "acme" and '\n  "data"' in payload   # indented for reading
    # An anonymised client's payload carries its pseudonym, never the plain ID or name.
    assert "beta-learner" not in html and "Petra" not in html and "learner_pseudonymised" in shown[0]
    second = client.get(url + "?page=2").get_data(as_text=True)
    assert len(rows(second)) == total - PAGE_SIZE and "page 2 of 2" in second
    assert not set(rows(second)) & set(shown)

    failed = rows(client.get(url + "?status=failed").get_data(as_text=True))
    waiting = rows(client.get(url + "?status=waiting").get_data(as_text=True))
    assert len(failed) == 1 and "failed · retrying" in failed[0] and "Ethics" in failed[0]
    assert len(waiting) == 1 and "waiting" in waiting[0]
    delivered = client.get(url + "?status=delivered").get_data(as_text=True)
    assert f"{ACME_LEARNERS + 1} deliveries matching" in delivered and len(rows(delivered)) == PAGE_SIZE
    older = client.get(url + "?status=delivered&page=2").get_data(as_text=True)
    assert len(rows(older)) == ACME_LEARNERS + 1 - PAGE_SIZE and all("delivered" in r for r in rows(older))
    assert "status=delivered" in re.search(r'rel="prev" href="([^"]+)"', older).group(1), "the filter is kept"
    completed = rows(client.get(url + "?type=learner.completed").get_data(as_text=True))
    assert len(completed) == 1 and "learner.completed" in completed[0] and "Acme" in completed[0]
    both = client.get(url + "?type=learner.completed&status=failed").get_data(as_text=True)
    assert rows(both) == [] and "No delivery matches this filter." in both
    # Past the last page: the last page, not an error.
    assert len(rows(client.get(url + "?page=99").get_data(as_text=True))) == total - PAGE_SIZE


@pytest.mark.parametrize(("query", "needle"), [
    ("status=lost", "state must be delivered, failed or waiting"),
    ("type=learner.exploded", "unknown event type"),
    ("page=two", "page must be a whole number"),
    ("page=0", "page must be a whole number"),
])
def test_a_filter_not_understood_is_a_clear_400(client, login, make_staff, world, query, needle):
    login(make_staff("csm"))
    response = client.get(f"/admin/webhooks/{world}?{query}")
    assert response.status_code == 400 and needle in response.get_data(as_text=True)


def test_replay_from_the_filtered_page_still_works(app, client, login, make_staff, world, hook):
    login(make_staff("admin"))
    page = client.get(f"/admin/webhooks/{world}?status=failed").get_data(as_text=True)
    delivery_id = int(re.search(r'<tr data-delivery="(\d+)">', page).group(1))
    assert client.post(f"/admin/webhooks/{world}/active", data={"active": "1", "csrf_token": csrf_token_from(page)},
                       ).status_code == 302
    hook.status = 200
    replayed = client.post(f"/admin/webhooks/deliveries/{delivery_id}/replay",
                           data={"csrf_token": csrf_token_from(page)})
    assert replayed.status_code == 302
    _run(app)        # now: the replay is due at once (and the resumed endpoint's waiting event goes out)
    db.session.expire_all()
    assert db.session.get(OutboxDelivery, delivery_id).status == "delivered"
    assert rows(client.get(f"/admin/webhooks/{world}?status=failed").get_data(as_text=True)) == []
    assert db.session.scalar(select(OutboxDelivery.id).where(OutboxDelivery.status == "dead")) is None
