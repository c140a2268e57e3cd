"""The role x page matrix for the admin: every route, every role, own and other client.

admin: everything. csm: everything but staff users (403). billing: 403 (staff
who know the admin exists). client users: 404 everywhere (the admin does not
exist for them, whichever client the page is about). Signed out: to the login page.
"""

from __future__ import annotations

import pytest
from conftest import csrf_token_from

from app.extensions import db

ROLES = ["anonymous", "admin", "csm", "billing", "client-own", "client-other"]


def routes(own_slug: str, staff_id: int) -> list[tuple[str, str, dict | None, int]]:
    """(method, url, form data, status for an allowed role) for every admin route."""
    c = f"/admin/clients/{own_slug}"
    return [
        ("GET", "/admin/", None, 200),
        ("GET", "/admin/clients/new", None, 200),
        ("POST", "/admin/clients/new", {"name": ""}, 400),
        ("GET", c, None, 200),
        ("GET", f"{c}/edit", None, 200),
        ("POST", f"{c}/edit", {"name": ""}, 400),
        ("POST", f"{c}/rotate-key", {"grace_hours": "1", "confirm": "y"}, 200),
        ("GET", f"{c}/mode", None, 200),
        ("POST", f"{c}/mode", {"confirm_name": "not the name"}, 400),
        ("POST", f"{c}/pseudonymise-remaining", {}, 409),  # the client is verbatim
        ("GET", f"{c}/packages", None, 200),
        ("POST", f"{c}/packages", {"course_title": ""}, 400),
        ("POST", f"{c}/packages/00000000-0000-4000-8000-000000000000/revoke-key", {}, 404),
        ("GET", f"{c}/packages/00000000-0000-4000-8000-000000000000", None, 404),
        ("POST", f"{c}/packages/00000000-0000-4000-8000-000000000000/republish", {}, 404),
        ("GET", f"{c}/go-live", None, 200),
        ("GET", f"{c}/go-live/beacons.json", None, 200),
        ("GET", "/admin/audit", None, 200),
        ("GET", f"/admin/audit?client={own_slug}", None, 200),
        ("GET", f"/admin/audit.csv?client={own_slug}", None, 200),
        ("GET", "/admin/staff", None, 200),
        ("POST", "/admin/staff", {"email": ""}, 400),
        ("POST", f"/admin/staff/{staff_id}", {}, 302),
        ("POST", f"/admin/staff/{staff_id}/password", {}, 302),
        ("POST", f"/admin/staff/{staff_id}/second-factor", {}, 302),
        ("GET", "/admin/staff/tokens", None, 200),
        ("POST", "/admin/staff/tokens", {"label": ""}, 400),
        ("POST", "/admin/staff/tokens/999999/revoke", {}, 404),
        ("GET", f"{c}/licence", None, 200),
        ("POST", f"{c}/licence", {"term-starts_on": ""}, 400),
        ("POST", f"{c}/licence/contacts", {"contacts-alert_emails": "not-an-address"}, 400),
        ("POST", f"{c}/licence/renew", {}, 302),  # no term yet: nothing to renew
        ("GET", f"{c}/licence/terms/999999", None, 404),
        ("POST", f"{c}/licence/terms/999999", {"term-starts_on": ""}, 404),
        ("POST", f"{c}/licence/terms/999999/remove", {}, 404),
        ("GET", "/admin/webhooks", None, 200),
        ("POST", "/admin/webhooks", {"url": "http://10.0.0.1/"}, 400),
        ("GET", "/admin/webhooks/999999", None, 404),
        ("POST", "/admin/webhooks/deliveries/999999/replay", {}, 404),
        ("POST", "/admin/webhooks/999999/active", {"active": "0"}, 404),
        ("GET", f"{c}/identities", None, 200),
        ("POST", f"{c}/identities/merge", {"scope": "all"}, 400),  # not confirmed
        ("POST", f"{c}/identities/merge", {"pair": "1-2"}, 409),  # not proposed
        ("POST", f"{c}/identities/merges/999999/undo", {}, 404),
        ("GET", f"{c}/held-back", None, 200),
        ("POST", f"{c}/held-back/release", {}, 400),  # not confirmed
    ]




def expected(role: str, url: str, allowed_status: int) -> int:
    if role == "anonymous":
        return 302
    if role.startswith("client"):
        return 404
    if role == "billing":
        return 403
    if role == "csm" and url.startswith("/admin/staff"):
        return 403
    return allowed_status


@pytest.fixture
def world(make_client, make_staff):
    own, _ = make_client(name="Own Client")
    other, _ = make_client(name="Other Client")
    users = {
        "admin": make_staff("admin"), "csm": make_staff("csm"), "billing": make_staff("billing"),
        "client-own": make_staff("client", client=own), "client-other": make_staff("client", client=other),
    }
    target = make_staff("csm", email="target@example.com")
    return own, other, users, target


def token_for(client) -> str:
    """A valid CSRF token for whoever is signed in (every page carries the sign-out form)."""
    for url in ("/login", "/", "/admin/", "/no-such-page"):
        html = client.get(url).get_data(as_text=True)
        if 'name="csrf_token"' in html:
            return csrf_token_from(html)
    raise AssertionError("no page with a CSRF token")


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_route_answers_as_the_matrix_says(role, world, client, login):
    own, _, users, target = world
    if role != "anonymous":
        login(users[role])
    token = token_for(client)
    wrong = []
    for method, url, data, allowed in routes(own.slug, target.id):
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={**(data or {}), "csrf_token": token})
        want = expected(role, url, allowed)
        if response.status_code != want:
            wrong.append(f"{role} {method} {url}: {response.status_code}, expected {want}")
        if role == "anonymous" and response.status_code == 302:
            assert "/login" in response.headers["Location"]
    assert not wrong, "\n".join(wrong)


def test_the_matrix_covers_every_admin_route(app, world):
    own, _, _, target = world
    covered = set()
    adapter = app.url_map.bind("localhost", url_scheme="https")
    for method, url, _, _ in routes(own.slug, target.id):
        endpoint, _ = adapter.match(url.split("?")[0], method=method)
        covered.add((endpoint, method))
    declared = {
        (rule.endpoint, method) for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert declared <= covered, f"routes missing from the matrix: {sorted(declared - covered)}"


@pytest.mark.parametrize("role", ["admin", "csm"])
def test_another_clients_or_an_unknown_slug_is_404(role, world, client, login):
    _, _, users, _ = world
    login(users[role])
    for url in ("/admin/clients/no-such-client", "/admin/clients/no-such-client/go-live",
                "/admin/clients/no-such-client/go-live/beacons.json", "/admin/audit?client=no-such-client",
                "/admin/staff/999999"):
        response = client.get(url) if "staff" not in url else client.post(url, data={"csrf_token": token_for(client)})
        assert response.status_code in (404, 403 if role == "csm" and "staff" in url else 404), url


@pytest.mark.parametrize("role", ["billing", "client-own"])
def test_the_navigation_hides_the_admin_from_non_admin_roles(role, world, client, login):
    _, _, users, _ = world
    login(users[role])
    html = client.get("/no-such-page").get_data(as_text=True)
    assert "/admin/" not in html


def test_admin_and_csm_see_the_admin_in_the_navigation(world, client, login):
    _, _, users, _ = world
    login(users["csm"])
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/admin/")
    html = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/"' in html and 'href="/admin/audit"' in html
    assert 'href="/admin/staff"' not in html


def test_a_client_user_of_that_very_client_still_gets_404(world, client, login):
    own, _, users, _ = world
    login(users["client-own"])
    assert client.get(f"/admin/clients/{own.slug}").status_code == 404
    db.session.rollback()
