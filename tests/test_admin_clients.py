"""The CSM's client pages: create, edit, rotate keys, packages, audit log, staff users, CSRF on each form."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from conftest import TEST_PASSWORD, beacon_body, csrf_token_from
from sqlalchemy import select

from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import AuditEntry, Client, ClientKey, PackageIssue, StaffSession, StaffUser

BEACONS = "/api/v1/beacons"


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm", email="casey@vendor.example")
    login(user)
    return user


@pytest.fixture
def admin(make_staff, login):
    user = make_staff("admin", email="ada@vendor.example")
    login(user)
    return user


def token(client, url="/admin/") -> str:
    return csrf_token_from(client.get(url).get_data(as_text=True))


def audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_client_list_shows_status_at_a_glance(client, csm, make_client):
    acme, key = make_client(name="Acme", seat_limit=1, anonymised=True)
    make_client(name="Perpetual Ltd", licence="perpetual")
    for sid in ("a", "b"):
        assert client.post(BEACONS, json=beacon_body(key, student_id=sid)).status_code == 204
    html = client.get("/admin/").get_data(as_text=True)
    assert "Acme" in html and "Perpetual Ltd" in html
    assert "anonymised" in html and "verbatim" in html
    assert "perpetual · untracked" in html
    assert "2 / 1" in html and "over limit" in html
    assert "never" in html  # Perpetual Ltd has sent no beacon
    assert dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") in html  # Acme's last beacon


def test_empty_client_list_says_what_to_do(client, csm):
    html = client.get("/admin/").get_data(as_text=True)
    assert "No clients yet" in html and "/admin/clients/new" in html


def test_create_client_shows_the_key_once_and_it_works(client, csm):
    response = client.post("/admin/clients/new", data={
        "csrf_token": token(client, "/admin/clients/new"), "name": "Globex", "active": "y",
        "licence": "subscription", "seat_limit": "50", "licence_start": "2026-01-01",
        "licence_end": "2026-12-31", "origins": "https://lms.globex.example\nhttps://lms2.globex.example:8443/",
    })
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    key = html.split('id="beacon-key">')[1].split("<")[0]
    assert key.startswith("ck_")
    globex = db.session.scalar(select(Client).where(Client.name == "Globex"))
    assert globex.allowed_origins == ["https://lms.globex.example", "https://lms2.globex.example:8443"]
    [term] = licence_terms.terms(db.session, globex.id)  # the form's licence fields make its first term
    assert (term.starts_on, term.ends_on, term.seat_limit) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31), 50)
    assert client.post(BEACONS, json=beacon_body(key), headers={"Origin": "https://lms.globex.example"}
                       ).status_code == 204
    assert key not in client.get(f"/admin/clients/{globex.slug}").get_data(as_text=True)
    [entry] = audit("client.create")
    assert entry.actor == "casey@vendor.example" and entry.after["name"] == "Globex"


def test_create_an_inactive_client_is_one_audit_entry(client, csm):
    client.post("/admin/clients/new", data={"csrf_token": token(client, "/admin/clients/new"), "name": "Later Ltd",
                                           "licence": "subscription"})
    assert db.session.scalar(select(Client.active).where(Client.name == "Later Ltd")) is False
    [entry] = audit("client.create")
    assert entry.after["active"] is False


def test_create_client_form_shows_inline_errors(client, csm):
    response = client.post("/admin/clients/new", data={
        "csrf_token": token(client, "/admin/clients/new"), "name": "", "origins": "ftp://nope",
        "licence_start": "2026-05-01", "licence_end": "2026-01-01", "seat_limit": "-3",
    })
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Give the client a name." in html
    assert "must look like https://lms.example.com" in html
    assert "The licence term cannot end before it starts." in html
    assert "Zero or more." in html
    assert db.session.scalar(select(Client)) is None


def test_edit_client_is_audited_with_before_and_after_and_reaches_beacons_at_once(client, csm, make_client):
    acme, key = make_client(name="Acme")
    assert client.post(BEACONS, json=beacon_body(key)).status_code == 204  # cached as allowed from anywhere
    response = client.post(f"/admin/clients/{acme.slug}/edit", data={
        "csrf_token": token(client, f"/admin/clients/{acme.slug}/edit"), "name": "Acme Corp", "active": "y",
        "licence": "subscription", "origins": "https://lms.acme.example",
    })
    assert response.status_code == 302
    [entry] = audit("client.update")
    assert entry.before == {"name": "Acme", "allowed_origins": []}
    assert entry.after == {"name": "Acme Corp", "allowed_origins": ["https://lms.acme.example"]}
    # The process's client cache was cleared: the new origin list applies to the very next beacon.
    refused = client.post(BEACONS, json=beacon_body(key), headers={"Origin": "https://elsewhere.example"})
    assert refused.status_code == 403


def test_deactivating_a_client_stops_its_beacons_at_once(client, csm, make_client):
    acme, key = make_client(name="Acme")
    assert client.post(BEACONS, json=beacon_body(key)).status_code == 204
    client.post(f"/admin/clients/{acme.slug}/edit", data={
        "csrf_token": token(client), "name": "Acme", "licence": "subscription"})
    assert client.post(BEACONS, json=beacon_body(key)).status_code == 403


def test_rotate_key_keeps_the_old_key_for_the_grace_period(client, csm, make_client):
    acme, old_key = make_client(name="Acme")
    response = client.post(f"/admin/clients/{acme.slug}/rotate-key",
                           data={"csrf_token": token(client), "grace_hours": "48", "confirm": "y"})
    assert response.status_code == 200
    new_key = response.get_data(as_text=True).split('id="beacon-key">')[1].split("<")[0]
    assert new_key != old_key
    assert client.post(BEACONS, json=beacon_body(new_key)).status_code == 204
    assert client.post(BEACONS, json=beacon_body(old_key)).status_code == 204
    db.session.rollback()
    old = db.session.scalar(select(ClientKey).where(ClientKey.key_prefix == old_key[:8]))
    remaining = old.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=47) < remaining <= dt.timedelta(hours=48)
    [entry] = audit("client.rotate_key")
    assert entry.actor == "casey@vendor.example"
    page = client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    assert "grace" in page and new_key[:8] in page


def test_rotating_a_key_asks_for_confirmation(client, csm, make_client):
    acme, old_key = make_client(name="Acme")
    response = client.post(f"/admin/clients/{acme.slug}/rotate-key", data={"csrf_token": token(client),
                                                                           "grace_hours": "0"})
    assert response.status_code == 302
    assert "tick the box to confirm" in client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    assert client.post(BEACONS, json=beacon_body(old_key)).status_code == 204
    assert audit("client.rotate_key") == []


def test_rotate_key_with_no_grace_ends_the_old_key_now(client, csm, make_client):
    acme, old_key = make_client(name="Acme")
    client.post(f"/admin/clients/{acme.slug}/rotate-key", data={"csrf_token": token(client), "grace_hours": "0", "confirm": "y"})
    assert client.post(BEACONS, json=beacon_body(old_key)).status_code == 403


def test_rotate_key_refuses_a_negative_grace(client, csm, make_client):
    acme, old_key = make_client(name="Acme")
    response = client.post(f"/admin/clients/{acme.slug}/rotate-key",
                           data={"csrf_token": token(client), "grace_hours": "-5"}, follow_redirects=True)
    assert "Key not rotated" in response.get_data(as_text=True)
    assert audit("client.rotate_key") == []


@pytest.mark.parametrize("method_url_data", [
    ("/admin/clients/new", {"name": "Evil"}),
    ("/admin/clients/{slug}/edit", {"name": "Evil", "licence": "subscription"}),
    ("/admin/clients/{slug}/rotate-key", {"grace_hours": "0", "confirm": "y"}),
    ("/admin/clients/{slug}/mode", {"confirm_name": "Acme"}),
    ("/admin/clients/{slug}/pseudonymise-remaining", {}),
    ("/admin/clients/{slug}/packages", {"course_title": "Evil", "scorm_version": "1.2"}),
    ("/admin/staff", {"email": "evil@example.com", "role": "admin", "password": "a" * 20}),
    ("/admin/staff/{staff_id}", {"u{staff_id}-role": "admin", "u{staff_id}-active": "y"}),
    ("/logout", {}),
])
def test_each_state_changing_form_without_csrf_token_is_400(client, admin, make_client, make_staff,
                                                           method_url_data):
    acme, _ = make_client(name="Acme")
    other = make_staff("billing")
    url, data = method_url_data
    url = url.format(slug=acme.slug, staff_id=other.id)
    data = {k.format(staff_id=other.id): v for k, v in data.items()}
    before = len(audit("client.update")) + len(audit("client.mode")) + len(audit("client.rotate_key"))
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert "The form expired or was not sent from this site" in response.get_data(as_text=True)
    # ... and with a token from another session neither.
    response = client.post(url, data={**data, "csrf_token": "forged-token"})
    assert response.status_code == 400
    after = len(audit("client.update")) + len(audit("client.mode")) + len(audit("client.rotate_key"))
    assert after == before
    assert db.session.scalar(select(Client).where(Client.name == "Evil")) is None
    assert client.get("/admin/").status_code == 200  # still signed in (logout refused too)


def test_package_form_shows_inline_errors_and_the_issued_list(client, csm, make_client):
    acme, _ = make_client(name="Acme", licence="perpetual")
    db.session.add(PackageIssue(client_id=acme.id, course_title="Fire Safety", scorm_version="2004",
                                mode="untracked", issued_by="casey@vendor.example"))
    db.session.add(PackageIssue(client_id=acme.id, course_title="GDPR Basics", scorm_version="1.2",
                                mode="deployed", issued_by="sam@vendor.example"))
    db.session.commit()
    html = client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)
    assert "perpetual licence: the package is <strong>untracked</strong>" in html
    assert "Fire Safety" in html and "untracked (perpetual)" in html and 'class="untracked"' in html
    assert "GDPR Basics" in html and "sam@vendor.example" in html
    response = client.post(f"/admin/clients/{acme.slug}/packages",
                           data={"csrf_token": token(client), "course_title": "", "scorm_version": "1.2"})
    assert response.status_code == 400
    assert "Give the course a title." in response.get_data(as_text=True)


def test_package_list_empty_state(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    html = client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    assert "No package issued yet" in html


def test_build_and_download_a_package(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    response = client.post(f"/admin/clients/{acme.slug}/packages", data={
        "csrf_token": token(client), "course_title": "Anti-Bribery", "scorm_version": "2004",
    })
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert "imsmanifest.xml" in names
    db.session.rollback()
    issue = db.session.scalar(select(PackageIssue).where(PackageIssue.client_id == acme.id))
    assert issue.course_title == "Anti-Bribery" and issue.issued_by == "casey@vendor.example"
    assert "Anti-Bribery" in client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)


def test_build_a_remote_package_from_the_admin(client, csm, make_client):
    from app.models import RemoteContent

    acme, _ = make_client(name="Acme")
    response = client.post(f"/admin/clients/{acme.slug}/packages", data={
        "csrf_token": token(client), "course_title": "Fire Safety", "scorm_version": "1.2", "mode": "remote",
    })
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert "imsmanifest.xml" in names and "course.js" not in names
    db.session.rollback()
    issue = db.session.scalar(select(PackageIssue).where(PackageIssue.client_id == acme.id))
    assert issue.mode == "remote"
    assert db.session.scalar(select(RemoteContent).where(RemoteContent.package_id == issue.package_id)) is not None


def test_a_remote_build_from_the_admin_says_what_may_not_work_remotely(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    course = io.BytesIO()
    with zipfile.ZipFile(course, "w") as archive:
        archive.writestr("index.html", "<html><head><title>Course</title></head><body>"
                                       "<script>top.location.href = 'next.html';</script></body></html>")
    course.seek(0)
    response = client.post(f"/admin/clients/{acme.slug}/packages", data={
        "csrf_token": token(client), "course_title": "Fire Safety", "scorm_version": "1.2", "mode": "remote",
        "content": (course, "course.zip"),
    }, content_type="multipart/form-data")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    page = client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)
    assert 'class="flash flash-warning"' in page and "index.html (top.location) reaches into the LMS&#39;s window" in page
    assert f"{acme.slug}-fire-safety-scorm12.zip was built" in page  # the name of the file downloaded


def test_upload_content_and_perpetual_download(client, csm, make_client):
    perpetual, _ = make_client(name="Forever Ltd", licence="perpetual")
    course = io.BytesIO()
    with zipfile.ZipFile(course, "w") as archive:
        archive.writestr("index.html", "<html><head><title>Course</title></head><body>Hi</body></html>")
    course.seek(0)
    response = client.post(f"/admin/clients/{perpetual.slug}/packages", data={
        "csrf_token": token(client), "course_title": "Ethics", "scorm_version": "1.2",
        "content": (course, "course.zip"),
    }, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert "index.html" in archive.namelist()
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"ck_" not in everything and b"/api/v1/beacons" not in everything
    db.session.rollback()
    issue = db.session.scalar(select(PackageIssue).where(PackageIssue.client_id == perpetual.id))
    assert issue.mode == "untracked"
    bad = client.post(f"/admin/clients/{perpetual.slug}/packages", data={
        "csrf_token": token(client), "course_title": "Ethics", "scorm_version": "1.2",
        "content": (io.BytesIO(b"not a zip"), "course.zip"),
    }, content_type="multipart/form-data")
    assert bad.status_code == 400
    assert "zip" in bad.get_data(as_text=True)


def test_audit_log_filters_by_client(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    make_client(name="Globex")
    html = client.get("/admin/audit").get_data(as_text=True)
    assert html.count("client.create") == 2
    html = client.get(f"/admin/audit?client={acme.slug}").get_data(as_text=True)
    assert html.count("client.create") == 1 and "Changes to Acme" in html
    assert client.get("/admin/audit?client=nope").status_code == 404


# --- staff users (admin only) -----------------------------------------------------


def test_admin_creates_a_client_user_audited(client, admin, make_client):
    acme, _ = make_client(name="Acme")
    response = client.post("/admin/staff", data={
        "csrf_token": token(client, "/admin/staff"), "email": "Pat@Acme.example", "role": "client",
        "client": acme.slug, "password": "a long enough password"})
    assert response.status_code == 302
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == "pat@acme.example"))
    assert (user.role, user.client_id) == ("client", acme.id)
    [entry] = [e for e in audit("staff.create") if e.actor == "ada@vendor.example"]
    assert entry.after["email"] == "pat@acme.example" and "password" not in str(entry.after)


def test_staff_form_inline_errors(client, admin):
    response = client.post("/admin/staff", data={
        "csrf_token": token(client, "/admin/staff"), "email": "x@example.com", "role": "client", "client": "",
        "password": "short"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "At least 12 characters." in html


def test_admin_deactivates_a_user_which_ends_their_sessions(client, admin, make_staff, app):
    victim = make_staff("csm", email="leaver@vendor.example")
    other = app.test_client()
    page = other.get("/login").get_data(as_text=True)
    other.post("/login", data={"email": victim.email, "password": TEST_PASSWORD,
                               "csrf_token": csrf_token_from(page)})
    assert other.get("/admin/").status_code == 200
    response = client.post(f"/admin/staff/{victim.id}", data={
        "csrf_token": token(client, "/admin/staff"), f"u{victim.id}-role": "csm"})
    assert response.status_code == 302
    assert other.get("/admin/").status_code == 302
    db.session.rollback()
    assert db.session.get(StaffUser, victim.id).active is False
    assert db.session.scalar(select(StaffSession.revoked_at).where(StaffSession.staff_user_id == victim.id))
    [entry] = audit("staff.update")
    assert entry.before["active"] is True and entry.after["active"] is False


def test_admin_changes_a_role_and_unlocks(client, admin, make_staff):
    user = make_staff("billing")
    user.locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    db.session.commit()
    assert "locked" in client.get("/admin/staff").get_data(as_text=True)
    client.post(f"/admin/staff/{user.id}", data={
        "csrf_token": token(client, "/admin/staff"), f"u{user.id}-role": "csm", f"u{user.id}-active": "y",
        f"u{user.id}-unlock": "y"})
    db.session.rollback()
    user = db.session.get(StaffUser, user.id)
    assert user.role == "csm" and user.locked_until is None
    [entry] = audit("staff.update")
    assert (entry.before["role"], entry.after["role"]) == ("billing", "csm")


def test_admin_cannot_lock_themselves_out(client, admin):
    response = client.post(f"/admin/staff/{admin.id}", data={
        "csrf_token": token(client, "/admin/staff"), f"u{admin.id}-role": "csm", f"u{admin.id}-active": "y"},
        follow_redirects=True)
    assert "cannot deactivate yourself" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(StaffUser, admin.id).role == "admin"
