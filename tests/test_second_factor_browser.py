"""A real Chromium enrolls and uses a second factor against a real gunicorn with
STAFF_SECOND_FACTOR=required: a passkey through Chromium's virtual authenticator (the DevTools
protocol's WebAuthn domain), and an authenticator app whose codes pyotp computes, then a recovery code.

The server is reached as https://localhost: a WebAuthn relying party is a host name, never an IP address.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from conftest import TEST_PASSWORD, LiveServer, watched_page
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, WebAuthnCredential

# one_database: WebAuthn and TOTP in a browser; test_second_factor runs in both passes.
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.one_database]


@pytest.fixture
def strict_server(database_url, tls_ca, tmp_path, app):
    server = LiveServer(database_url, tls_ca, tmp_path / "gunicorn.log",
                        extra_env={"CONTENT_DIR": app.config["CONTENT_DIR"], "STAFF_SECOND_FACTOR": "required"})
    server.site = f"https://localhost:{server.port}"
    server.extra_env.update({"PUBLIC_URL": server.site, "CONTENT_URL": f"https://content.localhost:{server.port}"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(browser, strict_server):
    # A phone: the pages must work there. A trusted certificate: passkeys refuse a page with TLS errors.
    context, page = watched_page(browser, 390, 844, 15_000, ignore_https_errors=False)
    yield page
    context.close()


def password_step(page, server, user) -> None:
    page.goto(server.site + "/login")
    page.fill("#email", user.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")


def sign_out(page) -> None:
    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=You are signed out.")


def test_a_csm_enrols_a_passkey_at_first_sign_in_and_signs_in_with_it(page, strict_server, make_staff,
                                                                     screenshots_dir):
    user = make_staff("csm", email="casey@vendor.example")
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    authenticator = devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]

    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/account/security$"))
    page.wait_for_selector("text=Add a passkey or an authenticator app to finish signing in")
    assert page.locator("nav.nav").count() == 0  # not signed in yet
    page.screenshot(path=str(screenshots_dir / "signin-01-enrol.png"), full_page=True)
    page.fill("#passkey-name", "Casey's laptop")
    page.click("#add-passkey")
    page.wait_for_selector("#recovery-codes")
    page.wait_for_selector("text=Passkey added")
    page.screenshot(path=str(screenshots_dir / "signin-02-recovery-codes.png"), full_page=True)
    assert len(page.locator("#recovery-codes code").all_inner_texts()) == 10
    assert "Casey's laptop" in page.inner_text("body")
    assert len(devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]) == 1

    page.goto(strict_server.site + "/admin/")
    page.wait_for_selector("h1:has-text('Clients')")
    sign_out(page)

    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/login/verify$"))
    page.screenshot(path=str(screenshots_dir / "signin-03-second-factor.png"), full_page=True)
    page.click("#use-passkey")
    page.wait_for_url(re.compile(r".*/admin/$"))
    page.wait_for_selector("h1:has-text('Clients')")
    assert not page.problems, page.problems

    db.session.rollback()
    passkey = db.session.scalar(select(WebAuthnCredential).where(WebAuthnCredential.staff_user_id == user.id))
    assert passkey.name == "Casey's laptop" and passkey.last_used_at is not None
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "staff.second_factor_added",
                                                      AuditEntry.actor == user.email))

    # Without the authenticator the passkey step fails, and the page says so instead of signing in.
    devtools.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})
    sign_out(page)
    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/login/verify$"))
    devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.click("#use-passkey")
    page.wait_for_selector("[data-passkey-error]:not([hidden])")
    assert "/login/verify" in page.url


def test_an_admin_enrols_an_authenticator_app_then_uses_it_and_a_recovery_code(page, strict_server, make_staff,
                                                                              screenshots_dir):
    user = make_staff("admin", email="ada@vendor.example")
    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/account/security$"))
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#totp-code", pyotp.TOTP(secret).now())
    page.click("button:has-text('Set up the authenticator app')")
    page.wait_for_selector("text=Authenticator app set up")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    sign_out(page)

    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/login/verify$"))
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))  # the next step: enrolment spent this one
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r".*/admin/$"))
    sign_out(page)

    password_step(page, strict_server, user)
    page.wait_for_url(re.compile(r".*/login/verify$"))
    page.fill("#code", codes[3])
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r".*/admin/$"))
    page.wait_for_selector("text=Recovery code used; 9 left")
    page.screenshot(path=str(screenshots_dir / "signin-04-recovery-used.png"), full_page=True)
    assert not page.problems, page.problems
