"""Sign-in and sign-out: cookies, sessions that end for good, safe redirects, CSRF, lockout, rate limits."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from conftest import TEST_PASSWORD, csrf_token_from
from sqlalchemy import select

from app.extensions import db
from app.models import StaffSession, StaffUser
from app.staff import services as staff_service


def post_login(client, email, password, next_url=None):
    page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url is not None else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def session_cookie(response) -> str:
    cookies = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert cookies, "no session cookie set"
    return cookies[-1]


def test_login_sets_secure_httponly_lax_cookie(client, make_staff):
    user = make_staff("csm")
    response = post_login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 302
    cookie = session_cookie(response)
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_login_form_has_the_contract_fields(client):
    html = client.get("/login").get_data(as_text=True)
    for name in ('name="email"', 'name="password"', 'name="csrf_token"'):
        assert name in html


def test_wrong_password_is_refused_without_saying_which_part(client, make_staff):
    user = make_staff("csm")
    response = post_login(client, user.email, "not the password at all")
    assert response.status_code == 400
    assert "do not match an active account" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302  # still signed out


def test_unknown_email_gets_the_same_answer(client):
    response = post_login(client, "nobody@example.com", "whatever password")
    assert response.status_code == 400
    assert "do not match an active account" in response.get_data(as_text=True)


def test_inactive_user_cannot_sign_in(client, make_staff):
    user = make_staff("csm")
    user.active = False
    db.session.commit()
    assert post_login(client, user.email, TEST_PASSWORD).status_code == 400


@pytest.mark.parametrize("target", ["/admin/audit", "/admin/clients/new?x=1"])
def test_next_to_a_local_path_is_followed(client, make_staff, target):
    user = make_staff("csm")
    response = post_login(client, user.email, TEST_PASSWORD, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == target


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)",
    "http:evil.example", "evil.example/path", "https:/evil.example",
])
def test_next_to_another_site_is_ignored(client, make_staff, target):
    user = make_staff("csm")
    response = post_login(client, user.email, TEST_PASSWORD, next_url=target)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil" not in location and "javascript" not in location
    assert location == "/admin/"  # the CSM's home, not the given target


def test_login_starts_a_new_session(client, make_staff):
    """Nothing set before sign-in survives it (session fixation)."""
    user = make_staff("csm")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    post_login(client, user.email, TEST_PASSWORD)
    with client.session_transaction() as sess:
        assert "planted" not in sess
    assert db.session.scalar(select(StaffSession).where(StaffSession.staff_user_id == user.id)) is not None


def test_logout_revokes_the_session_and_a_replayed_cookie_is_refused(client, make_staff, app):
    user = make_staff("csm")
    post_login(client, user.email, TEST_PASSWORD)
    assert client.get("/admin/").status_code == 200
    old_cookie = client.get_cookie("session").value

    page = client.get("/admin/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302

    # Replay the cookie captured while signed in, as a thief who copied it would.
    thief = app.test_client()
    thief.set_cookie("session", old_cookie, domain="localhost", secure=True)
    response = thief.get("/admin/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    db.session.rollback()
    assert db.session.scalar(select(StaffSession.revoked_at).where(StaffSession.staff_user_id == user.id))


def test_a_captured_cookie_works_until_logout(client, make_staff, app):
    """The replay test above is meaningful: the same cookie did work while the session lived."""
    user = make_staff("csm")
    post_login(client, user.email, TEST_PASSWORD)
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value, domain="localhost", secure=True)
    assert other.get("/admin/").status_code == 200


def test_login_without_csrf_token_is_400(client, make_staff):
    user = make_staff("csm")
    client.get("/login")
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_logout_without_csrf_token_is_400_and_keeps_the_session(client, make_staff, login):
    user = make_staff("csm")
    login(user)
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200


def test_login_from_another_site_is_refused(client, make_staff):
    user = make_staff("csm")
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token},
                           headers={"Referer": "https://evil.example/form"})
    assert response.status_code == 400


def test_failures_never_lock_an_account_out(client, make_staff):
    """An outsider who knows a staff e-mail cannot lock its owner out by failing on purpose."""
    user = make_staff("csm")
    for _ in range(staff_service.LOCKOUT_THRESHOLD + 2):
        assert post_login(client, user.email, "wrong password!!").status_code == 400
    assert post_login(client, user.email, TEST_PASSWORD).status_code == 302
    db.session.rollback()
    assert db.session.get(StaffUser, user.id).locked_until is None


def test_a_locked_account_answers_like_an_unknown_one(client, make_staff):
    """The answer never tells which staff e-mails exist: an admin-locked account looks unknown."""
    user = make_staff("csm")
    user.locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    db.session.commit()
    locked = post_login(client, user.email, TEST_PASSWORD)
    unknown = post_login(client, "nobody@example.com", TEST_PASSWORD)
    assert locked.status_code == unknown.status_code == 400

    def message(response):
        return re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))

    assert message(locked).replace(user.email, "X") == message(unknown).replace("nobody@example.com", "X")
    assert "locked" not in message(locked)


def test_lockout_ends_after_its_period(client, make_staff):
    user = make_staff("csm")
    user.locked_until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db.session.commit()
    assert post_login(client, user.email, TEST_PASSWORD).status_code == 302


@pytest.mark.parametrize("target", ["/admin/\r\nSet-Cookie: x=1", "/admin/\nLocation: //evil.example",
                                    "/admin/\x00", "/admin/\t", "/admin/\u2028", "/admin/\x7f"])
def test_controls_in_next_are_refused_quietly(client, make_staff, target):
    user = make_staff("csm")
    response = post_login(client, user.email, TEST_PASSWORD, next_url=quote(target))
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert "Set-Cookie: x" not in str(response.headers)


def test_password_is_rehashed_when_parameters_were_raised(client, make_staff):
    user = make_staff("csm")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(TEST_PASSWORD)
    user.password_hash = weak
    db.session.commit()
    assert post_login(client, user.email, TEST_PASSWORD).status_code == 302
    db.session.rollback()
    stored = db.session.get(StaffUser, user.id).password_hash
    assert stored != weak
    assert not staff_service.password_hasher.check_needs_rehash(stored)


class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "LOGIN_RATE_LIMIT": "4/minute", "LOGIN_ACCOUNT_RATE_LIMIT": "3/minute"}

    def test_per_address_limit_with_a_clear_message(self, client, make_staff):
        users = [make_staff("csm") for _ in range(5)]
        for user in users[:4]:
            post_login(client, user.email, "wrong password!!")
        response = post_login(client, users[4].email, TEST_PASSWORD)
        assert response.status_code == 429
        assert "Too many sign-in attempts from your address" in response.get_data(as_text=True)
        assert response.headers["Retry-After"]

    def test_per_account_limit_is_per_address_and_account(self, client, make_staff):
        user = make_staff("csm")
        for n in range(3):
            response = post_login(client, user.email, "wrong password!!")
            assert response.status_code == 400, n
        response = post_login(client, user.email.upper(), TEST_PASSWORD)
        assert response.status_code == 429
        assert "Too many sign-in attempts for this e-mail address" in response.get_data(as_text=True)
        # The owner, from another address, is not locked out by that.
        elsewhere = client.application.test_client()
        elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
        assert post_login(elsewhere, user.email, TEST_PASSWORD).status_code == 302

    def test_sign_in_page_itself_is_not_limited(self, client):
        for _ in range(10):
            assert client.get("/login").status_code == 200
