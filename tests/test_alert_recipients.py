"""Who alert e-mails go to, through a real SMTP server (aiosmtpd): a client's CSM gets its alerts and
no other client's; admins and CSMs who opted in get every client's; a client without a CSM (or whose
CSM was deactivated) mails every active CSM; licence alerts also reach the client's contacts, a leak
never does. And the opt-in and the CSM are set, audited, on the account page, the staff page, the
client form and the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from conftest import beacon_body, csrf_token_from
from outbox_helpers import run_outbox
from sqlalchemy import select

from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.models import AuditEntry, Client, StaffUser
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"
START = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
LMS = "https://lms.example.org"


@pytest.fixture
def app_config(app_config, smtp):
    return {**app_config, "SMTP_URL": smtp.url, "MAIL_FROM": "tracker@vendor.example"}


def _audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_each_alert_goes_to_the_clients_csm_and_opted_in_staff_and_leaks_never_to_contacts(
        app, client, runner, make_client, make_staff, smtp):
    csm_a = make_staff("csm", email="csm-a@vendor.example")
    csm_b = make_staff("csm", email="csm-b@vendor.example")
    make_staff("csm", email="csm-spare@vendor.example")  # the CSM of no client
    csm_d = make_staff("csm", email="csm-left@vendor.example")
    watcher = make_staff("admin", email="watcher@vendor.example")
    staff_service.update_staff(db.session, watcher, actor="test", all_client_alerts=True)
    make_staff("admin", email="quiet@vendor.example")  # not opted in: no alert at all
    make_staff("billing", email="billing@vendor.example")

    created = json.loads(runner.invoke(args=["client", "create", "--name", "Alpha", "--origin", LMS,
                                             "--csm", "CSM-A@vendor.example", "--json"]).output)
    assert created["csm"] == "csm-a@vendor.example"
    alpha = db.session.scalar(select(Client).where(Client.slug == created["slug"]))
    alpha_key = created["key"]
    bravo, bravo_key = make_client(name="Bravo", origins=[LMS], csm=csm_b)
    charlie, charlie_key = make_client(name="Charlie", origins=[LMS])  # no CSM
    delta, delta_key = make_client(name="Delta", origins=[LMS], csm=csm_d)
    staff_service.update_staff(db.session, csm_d, actor="test", active=False)  # left: Delta mails every CSM
    licences.set_contacts(db.session, alpha, ["ops@alpha.example"], actor="test")
    for row in (alpha, bravo, charlie, delta):
        licence_terms.add_term(db.session, row, actor="test", starts_on=dt.date(2026, 5, 1),
                          ends_on=dt.date(2026, 12, 31), seat_limit=2)

    with time_machine.travel(START, tick=False):
        for key in (alpha_key, bravo_key, charlie_key, delta_key):
            for n in range(2):  # 2 of 2 seats: one "reached its seat limit" message per client
                assert client.post(BEACONS, json=beacon_body(key, student_id=f"learner-{n}"),
                                   headers={"Origin": LMS}).status_code == 204
        assert client.post(BEACONS, json=beacon_body(alpha_key), headers={"Origin": "https://copied.example.net"}
                           ).status_code == 403
        run_outbox(app)

    to = {}
    for rcpts, message in smtp.messages:
        to.setdefault(str(message["Subject"]), []).extend(rcpts)
    to = {subject: sorted(addresses) for subject, addresses in to.items()}
    every_csm = ["csm-a@vendor.example", "csm-b@vendor.example", "csm-spare@vendor.example"]
    assert to.pop("Alpha has reached its seat limit") == ["csm-a@vendor.example", "ops@alpha.example",
                                                          "watcher@vendor.example"]
    assert to.pop("Beacons from an LMS not on Alpha's list") == ["csm-a@vendor.example", "watcher@vendor.example"]
    assert to.pop("Bravo has reached its seat limit") == ["csm-b@vendor.example", "watcher@vendor.example"]
    assert to.pop("Charlie has reached its seat limit") == [*every_csm, "watcher@vendor.example"]
    assert to.pop("Delta has reached its seat limit") == [*every_csm, "watcher@vendor.example"]
    assert to == {}, f"nothing else: {to}"
    everyone_mailed = {address for rcpts, _ in smtp.messages for address in rcpts}
    assert not everyone_mailed & {"quiet@vendor.example", "billing@vendor.example", "csm-left@vendor.example"}
    assert csm_a.email in everyone_mailed


def test_csm_must_be_an_active_csm_or_admin(runner, make_staff):
    make_staff("billing", email="money@vendor.example")
    for email, reason in (("money@vendor.example", "a billing user"), ("nobody@vendor.example", "no staff user")):
        result = runner.invoke(args=["client", "create", "--name", "Echo", "--csm", email])
        assert result.exit_code != 0 and reason in result.output
    assert db.session.scalar(select(Client).where(Client.name == "Echo")) is None


def test_admin_opts_in_on_their_account_page_audited(client, make_staff, login):
    admin = make_staff("admin", email="ada@vendor.example")
    login(admin)
    page = client.get("/account/security").get_data(as_text=True)
    assert "E-mail me every client&#39;s alerts" in page or "E-mail me every client's alerts" in page
    response = client.post("/account/alerts", data={"csrf_token": csrf_token_from(page), "all_client_alerts": "y"})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.get(StaffUser, admin.id).all_client_alerts is True
    [entry] = _audit("staff.update")
    assert (entry.actor, entry.before["all_client_alerts"], entry.after["all_client_alerts"]) == (
        admin.email, False, True)
    page = client.get("/account/security").get_data(as_text=True)
    client.post("/account/alerts", data={"csrf_token": csrf_token_from(page)})  # unticked: opted out
    db.session.rollback()
    assert db.session.get(StaffUser, admin.id).all_client_alerts is False
    assert client.post("/account/alerts", data={"all_client_alerts": "y"}).status_code == 400  # no CSRF token


def test_billing_user_has_no_opt_in(client, make_staff, login):
    user = make_staff("billing", email="money@vendor.example")
    login(user)
    page = client.get("/account/security").get_data(as_text=True)
    assert "every client" not in page
    response = client.post("/account/alerts", data={"csrf_token": csrf_token_from(page), "all_client_alerts": "y"})
    assert response.status_code == 403
    db.session.rollback()
    assert db.session.get(StaffUser, user.id).all_client_alerts is False


def test_admin_sets_the_opt_in_of_a_csm_on_the_staff_page(client, make_staff, login):
    admin = make_staff("admin", email="ada@vendor.example")
    csm = make_staff("csm", email="casey@vendor.example")
    login(admin)
    page = client.get("/admin/staff").get_data(as_text=True)
    assert f'name="u{csm.id}-all_client_alerts"' in page
    response = client.post(f"/admin/staff/{csm.id}", data={
        "csrf_token": csrf_token_from(page), f"u{csm.id}-role": "csm", f"u{csm.id}-active": "y",
        f"u{csm.id}-all_client_alerts": "y"})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.get(StaffUser, csm.id).all_client_alerts is True
    [entry] = _audit("staff.update")
    assert (entry.before["all_client_alerts"], entry.after["all_client_alerts"]) == (False, True)
    # Made a billing user: the opt-in goes with the role (billing users get no alerts).
    client.post(f"/admin/staff/{csm.id}", data={
        "csrf_token": csrf_token_from(page), f"u{csm.id}-role": "billing", f"u{csm.id}-active": "y",
        f"u{csm.id}-all_client_alerts": "y"})
    db.session.rollback()
    user = db.session.get(StaffUser, csm.id)
    assert (user.role, user.all_client_alerts) == ("billing", False)


def test_csm_set_on_the_client_form_shown_on_its_page_and_audited(client, make_staff, make_client, login):
    admin = make_staff("admin", email="ada@vendor.example")
    casey = make_staff("csm", email="casey@vendor.example")
    make_staff("billing", email="money@vendor.example")
    acme, _key = make_client(name="Acme")
    login(admin)
    page = client.get(f"/admin/clients/{acme.slug}/edit").get_data(as_text=True)
    assert "every active CSM" in page, "the form says where alerts go without a CSM"
    assert "casey@vendor.example" in page and "money@vendor.example" not in page, "only csm and admin users"
    form = {"csrf_token": csrf_token_from(page), "name": "Acme", "active": "y", "licence": "subscription",
            "origins": "", "csm": "casey@vendor.example"}
    assert client.post(f"/admin/clients/{acme.slug}/edit", data=form).status_code == 302
    db.session.rollback()
    assert db.session.get(Client, acme.id).csm.id == casey.id
    [entry] = _audit("client.update")
    assert (entry.before, entry.after) == ({"csm": None}, {"csm": "casey@vendor.example"})
    detail = client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    assert "casey@vendor.example" in detail.split('id="client-csm"')[1].split("</p>")[0]

    # A billing user cannot be one: 400, nothing changed.
    response = client.post(f"/admin/clients/{acme.slug}/edit", data={**form, "csm": "money@vendor.example"})
    assert response.status_code == 400 and "csm or admin user" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Client, acme.id).csm.id == casey.id
    # None again: back to every CSM.
    assert client.post(f"/admin/clients/{acme.slug}/edit", data={**form, "csm": ""}).status_code == 302
    db.session.rollback()
    assert db.session.get(Client, acme.id).csm is None
