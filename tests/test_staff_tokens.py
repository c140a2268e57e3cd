"""Password reset (CLI and admin) ends old sessions; API tokens expire, are listed and revoked (CLI and admin)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from conftest import TEST_PASSWORD, csrf_token_from
from sqlalchemy import select

from app.extensions import db
from app.models import ApiToken, AuditEntry
from app.staff import services as staff_service

NEW_PASSWORD = "a brand new long passphrase"


def usage(http, slug, token):
    return http.get(f"/api/v1/clients/{slug}/usage?from=2026-11-01&to=2026-11-30",
                    headers={"Authorization": f"Bearer {token}"})


def test_cli_reset_password_ends_old_sessions(app, runner, client, login, make_staff):
    user = make_staff("billing", email="bill@vendor.example")
    login(user)
    assert client.get("/billing/").status_code == 200
    result = runner.invoke(args=["staff", "reset-password", "BILL@vendor.example", "--password-stdin", "--json"],
                           input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert '"sessions_ended": 1' in result.output
    # The old session is over; the old password no longer works, the new one does.
    assert client.get("/billing/").status_code == 302
    page = client.get("/login").get_data(as_text=True)
    old = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                      "csrf_token": csrf_token_from(page)})
    assert old.status_code != 302
    login(user, NEW_PASSWORD)
    assert client.get("/billing/").status_code == 200
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "staff.reset_password"))
    assert NEW_PASSWORD not in str(entry.after) and entry.after["sessions_ended"] == 1


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["nobody@vendor.example"], NEW_PASSWORD, "no staff user"),
    (["bill@vendor.example"], "short", "at least 12"),
])
def test_cli_reset_password_refuses_bad_input(runner, make_staff, args, stdin, needle):
    make_staff("billing", email="bill@vendor.example")
    result = runner.invoke(args=["staff", "reset-password", *args, "--password-stdin"], input=stdin + "\n")
    assert result.exit_code != 0 and needle in result.output


def test_admin_resets_a_password_and_the_users_sessions_end(app, client, login, make_staff):
    admin = make_staff("admin", email="admin@vendor.example")
    target = make_staff("csm", email="casey@vendor.example")
    other = app.test_client()
    page = other.get("/login").get_data(as_text=True)
    assert other.post("/login", data={"email": target.email, "password": TEST_PASSWORD,
                                      "csrf_token": csrf_token_from(page)}).status_code == 302
    assert other.get("/admin/").status_code == 200
    login(admin)
    staff_page = client.get("/admin/staff").get_data(as_text=True)
    assert "At least 12 characters" in staff_page       # the rule is on the form before any error
    token = csrf_token_from(staff_page)
    short = client.post(f"/admin/staff/{target.id}/password", data={"csrf_token": token, f"p{target.id}-password": "x"})
    assert short.status_code == 302
    assert "not changed" in client.get("/admin/staff").get_data(as_text=True)
    assert other.get("/admin/").status_code == 200     # nothing changed
    done = client.post(f"/admin/staff/{target.id}/password",
                       data={"csrf_token": token, f"p{target.id}-password": NEW_PASSWORD})
    assert done.status_code == 302
    assert "1 session(s) ended" in client.get("/admin/staff").get_data(as_text=True)
    assert other.get("/admin/").status_code == 302     # signed out
    assert client.get("/admin/").status_code == 200    # the admin's own session goes on


def test_tokens_expire(client, make_client, make_staff):
    acme, _ = make_client(name="Acme")
    user = make_staff("billing")
    with time_machine.travel(dt.datetime(2026, 11, 1, tzinfo=dt.UTC), tick=False):
        token = staff_service.create_token(db.session, user, actor="test", days=30)
    with time_machine.travel(dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC), tick=False):
        assert usage(client, acme.slug, token).status_code == 200
    with time_machine.travel(dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC), tick=False):
        assert usage(client, acme.slug, token).status_code == 401
    with pytest.raises(staff_service.StaffError):
        staff_service.create_token(db.session, user, actor="test", days=0)


def test_cli_lists_and_revokes_a_token_by_prefix(runner, client, make_client, make_staff):
    import json

    acme, _ = make_client(name="Acme")
    make_staff("billing", email="bill@vendor.example")
    created = json.loads(runner.invoke(args=["token", "create", "bill@vendor.example", "--json"]).output)
    kept = json.loads(runner.invoke(args=["token", "create", "bill@vendor.example", "--json"]).output)
    assert created["prefix"] == created["token"][:11] and created["expires_at"]
    listed = json.loads(runner.invoke(args=["token", "list", "--json"]).output)["tokens"]
    assert {t["prefix"] for t in listed} == {created["prefix"], kept["prefix"]}
    assert all(created["token"] not in json.dumps(t) for t in listed)
    assert runner.invoke(args=["token", "revoke", "tk_"]).exit_code != 0
    result = runner.invoke(args=["token", "revoke", created["prefix"], "--json"])
    assert result.exit_code == 0, result.output
    assert usage(client, acme.slug, created["token"]).status_code == 401
    assert usage(client, acme.slug, kept["token"]).status_code == 200
    again = runner.invoke(args=["token", "revoke", created["prefix"]])
    assert again.exit_code != 0 and "revoked already" in again.output
    assert db.session.scalar(select(AuditEntry.id).where(AuditEntry.action == "token.revoke")) is not None


def test_admin_lists_and_revokes_tokens_with_confirmation(client, login, make_client, make_staff):
    acme, _ = make_client(name="Acme")
    owner = make_staff("billing", email="bill@vendor.example")
    token = staff_service.create_token(db.session, owner, actor="test", label="invoicing")
    row = db.session.scalar(select(ApiToken))
    login(make_staff("admin"))
    page = client.get("/admin/staff/tokens").get_data(as_text=True)
    assert row.token_prefix in page and "invoicing" in page and token not in page
    csrf = csrf_token_from(page)
    client.post(f"/admin/staff/tokens/{row.id}/revoke", data={"csrf_token": csrf})      # not confirmed
    assert usage(client, acme.slug, token).status_code == 200
    assert "tick the box" in client.get("/admin/staff/tokens").get_data(as_text=True)
    client.post(f"/admin/staff/tokens/{row.id}/revoke", data={"csrf_token": csrf, f"t{row.id}-confirm": "y"})
    assert usage(client, acme.slug, token).status_code == 401
    assert "revoked" in client.get("/admin/staff/tokens").get_data(as_text=True)


def _new_token(page: str) -> str:
    import re

    return re.search(r'id="api-token">(tk_[A-Za-z0-9_-]+)<', page).group(1)


def test_admin_creates_a_named_token_for_a_client_user_shown_once(client, login, make_client, make_staff):
    acme, _ = make_client(name="Acme")
    other, _ = make_client(name="Other")
    owner = make_staff("client", email="cleo@acme.example", client=acme)
    admin = make_staff("admin")
    login(admin)
    page = client.get("/admin/staff/tokens").get_data(as_text=True)
    csrf = csrf_token_from(page)
    # Bad input: a clear 400 on the form, nothing made.
    for data, needle in [({"owner": str(owner.id), "label": "  ", "days": "30"}, "Give the token a name"),
                         ({"owner": str(owner.id), "label": "x", "days": "0"}, "1 to 730 days"),
                         ({"owner": str(owner.id), "label": "x", "days": "soon"}, "1 to 730"),
                         ({"owner": "99999", "label": "x", "days": "30"}, "Not a valid choice"),
                         ({"owner": str(owner.id), "label": "x" * 101, "days": "30"}, "100 characters")]:
        bad = client.post("/admin/staff/tokens", data={"csrf_token": csrf, **data})
        assert bad.status_code == 400 and needle in bad.get_data(as_text=True), data
    no_csrf = client.post("/admin/staff/tokens", data={"owner": str(owner.id), "label": "x", "days": "30"})
    assert no_csrf.status_code == 400
    assert db.session.scalar(select(ApiToken.id)) is None
    made = client.post("/admin/staff/tokens", data={"csrf_token": csrf, "owner": str(owner.id),
                                                     "label": "Acme invoicing", "days": "30"})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    token = _new_token(made.get_data(as_text=True))
    # The token acts as its owner: its own client only.
    assert usage(client, acme.slug, token).status_code == 200
    assert usage(client, other.slug, token).status_code == 404
    row = db.session.scalar(select(ApiToken))
    assert row.label == "Acme invoicing" and row.staff_user_id == owner.id
    assert dt.timedelta(days=29) < row.expires_at - row.created_at <= dt.timedelta(days=30, minutes=1)
    listing = client.get("/admin/staff/tokens").get_data(as_text=True)
    assert row.token_prefix in listing and "Acme invoicing" in listing and token not in listing
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "token.create"))
    assert entry.actor == admin.email and entry.client_id == acme.id and token not in str(entry.after)


def test_an_inactive_user_gets_no_token(client, login, make_staff):
    owner = make_staff("billing", email="gone@vendor.example")
    login(make_staff("admin"))
    csrf = csrf_token_from(client.get("/admin/staff/tokens").get_data(as_text=True))
    owner.active = False
    db.session.commit()
    refused = client.post("/admin/staff/tokens", data={"csrf_token": csrf, "owner": str(owner.id),
                                                        "label": "x", "days": "30"})
    assert refused.status_code == 400 and db.session.scalar(select(ApiToken.id)) is None


@pytest.mark.parametrize("role", ["csm", "billing", "client"])
def test_only_admins_make_tokens_for_others(client, login, make_client, make_staff, role):
    acme, _ = make_client(name="Acme")
    target = make_staff("admin", email="boss@vendor.example")
    login(make_staff(role, client=acme if role == "client" else None))
    csrf = csrf_token_from(client.get("/account/tokens").get_data(as_text=True))
    response = client.post("/admin/staff/tokens", data={"csrf_token": csrf, "owner": str(target.id),
                                                         "label": "x", "days": "30"})
    assert response.status_code in (403, 404)
    assert db.session.scalar(select(ApiToken.id)) is None


def test_a_client_user_makes_lists_and_revokes_their_own_token(app, client, login, make_client, make_staff):
    acme, _ = make_client(name="Acme")
    other, _ = make_client(name="Other")
    user = make_staff("client", email="cleo@acme.example", client=acme)
    someone = make_staff("billing", email="bill@vendor.example")
    theirs = staff_service.create_token(db.session, someone, actor="test", label="not yours")
    their_row = db.session.scalar(select(ApiToken))
    login(user)
    page = client.get("/account/tokens")
    assert page.status_code == 200 and "not yours" not in page.get_data(as_text=True)
    csrf = csrf_token_from(page.get_data(as_text=True))
    bad = client.post("/account/tokens", data={"csrf_token": csrf, "label": "", "days": "30"})
    assert bad.status_code == 400 and "Give the token a name" in bad.get_data(as_text=True)
    too_long = client.post("/account/tokens", data={"csrf_token": csrf, "label": "mine", "days": "731"})
    assert too_long.status_code == 400 and "1 to 730 days" in too_long.get_data(as_text=True)
    made = client.post("/account/tokens", data={"csrf_token": csrf, "label": "my script", "days": "7"})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    token = _new_token(made.get_data(as_text=True))
    assert usage(client, acme.slug, token).status_code == 200
    assert usage(client, other.slug, token).status_code == 404
    mine = db.session.scalar(select(ApiToken).where(ApiToken.staff_user_id == user.id))
    listing = client.get("/account/tokens").get_data(as_text=True)
    assert mine.token_prefix in listing and "my script" in listing and token not in listing
    # Another user's token is not theirs to revoke: 404, and it still works.
    assert client.post(f"/account/tokens/{their_row.id}/revoke",
                       data={"csrf_token": csrf, f"t{their_row.id}-confirm": "y"}).status_code == 404
    assert usage(client, acme.slug, theirs).status_code == 200
    client.post(f"/account/tokens/{mine.id}/revoke", data={"csrf_token": csrf})          # not confirmed
    assert usage(client, acme.slug, token).status_code == 200
    client.post(f"/account/tokens/{mine.id}/revoke", data={"csrf_token": csrf, f"t{mine.id}-confirm": "y"})
    assert usage(client, acme.slug, token).status_code == 401
    actions = [(e.action, e.actor) for e in db.session.scalars(select(AuditEntry).where(
        AuditEntry.action.in_(["token.create", "token.revoke"])).order_by(AuditEntry.id))]
    assert actions[-2:] == [("token.create", user.email), ("token.revoke", user.email)]
    assert client.get("/account/tokens").status_code == 200


def test_the_token_page_needs_a_sign_in(client):
    assert client.get("/account/tokens").status_code == 302
    assert client.post("/account/tokens", data={"label": "x", "days": "3"}).status_code in (302, 400)
