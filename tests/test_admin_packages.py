"""The admin's package pages: full package IDs to copy, and republishing a remote package (issue 19)."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from conftest import csrf_token_from
from remote_courses import as_zip, captivate_multi
from scorm_content import authoring_zip
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, PackageIssue, RemoteContent


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm", email="casey@vendor.example")
    login(user)
    return user


def course_zip(body: str = "Version 1", script: str = "") -> io.BytesIO:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("index.html", f"<!DOCTYPE html><html><head><title>c</title></head><body>{body}"
                                       f"{script}</body></html>")
    data.seek(0)
    return data


def admin_build(client, acme, mode="remote", title="Fire Safety") -> str:
    url = f"/admin/clients/{acme.slug}/packages"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"csrf_token": token, "course_title": title, "scorm_version": "1.2",
                                      "mode": mode, "content": (course_zip(), "course.zip")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    db.session.rollback()
    return str(db.session.scalar(select(PackageIssue.package_id).where(PackageIssue.course_title == title)))


def remote_row(package_id: str) -> RemoteContent:
    db.session.rollback()
    return db.session.scalar(select(RemoteContent).where(RemoteContent.package_id.is_not(None)))


def republish(client, acme, package_id, content, confirm=True, **extra):
    url = f"/admin/clients/{acme.slug}/packages/{package_id}"
    page = client.get(url).get_data(as_text=True)
    data = {"csrf_token": csrf_token_from(page), "content": (content, "v2.zip"), **extra}
    if confirm:
        data["confirm"] = "y"
    return client.post(f"{url}/republish", data=data, content_type="multipart/form-data")


def republishes() -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "package.republish")))


def test_full_package_ids_with_a_copy_button_wherever_a_package_is_shown(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    assert len(package_id) == 36
    copy = f'<code class="full-id">{package_id}</code> <button type="button" class="copy small" data-copy="{package_id}"'
    for url in (f"/admin/clients/{acme.slug}", f"/admin/clients/{acme.slug}/packages",
                f"/admin/clients/{acme.slug}/packages/{package_id}"):
        response = client.get(url)
        page = response.get_data(as_text=True)
        assert copy in page, url
        # The copy script is a file of ours: the pages' CSP allows no inline script.
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert '<script src="/static/copy.js" defer></script>' in page
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), url
        assert f"package {package_id[:8]})" not in page  # no shortened ID left
    script = client.get("/static/copy.js", buffered=True)
    assert script.status_code == 200 and b"navigator.clipboard" in script.data
    script.close()


def test_republish_from_the_package_page_replaces_the_course_keeps_id_and_key_and_is_audited(
        client, csm, make_client, app):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    before = remote_row(package_id)
    old_version, key = before.content_version, before.beacon_key
    listing = client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)
    assert f"/admin/clients/{acme.slug}/packages/{package_id}#republish" in listing
    page = client.get(f"/admin/clients/{acme.slug}/packages/{package_id}").get_data(as_text=True)
    assert "shows the new version at the learner's <strong>next launch</strong>" in page
    assert "package ID and its beacon key <strong>stay the same</strong>" in page

    response = republish(client, acme, package_id, course_zip("Version 2"))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/clients/{acme.slug}/packages/{package_id}")
    after = remote_row(package_id)
    assert after.content_version != old_version and after.beacon_key == key
    assert db.session.scalar(select(PackageIssue.package_id).where(PackageIssue.client_id == acme.id)).hex \
        == package_id.replace("-", "")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The new version of Fire Safety is published" in page and "flash-warning" not in page
    [entry] = republishes()
    assert entry.actor == "casey@vendor.example" and entry.client_id == acme.id
    assert entry.before["version"] == old_version and entry.after["version"] == after.content_version
    redirect = client.get(f"/{package_id}/launch/0", base_url=app.config["CONTENT_URL"])
    assert after.content_version in redirect.headers["Location"]


def test_republish_shows_the_remote_warnings_as_the_build_form_does(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    response = republish(client, acme, package_id,
                         course_zip(script="<script>top.location.href = 'menu.html';</script>"))
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'class="flash flash-warning"' in page
    assert "The new version is live, but check this: index.html (top.location) reaches into the LMS" in page


@pytest.mark.parametrize(("content", "confirm", "message"), [
    (course_zip, False, "Tick the box to confirm the republish."),
    (lambda: io.BytesIO(authoring_zip("2004")), True, "the content is a SCORM 2004 package, not SCORM 1.2"),
    (lambda: io.BytesIO(as_zip(captivate_multi("1.2"))), True,
     "the package on the LMS has 1 SCO item(s) and the new content has 3"),
    (lambda: io.BytesIO(b"not a zip"), True, "Nothing changed: the LMSs keep showing the current version."),
])
def test_a_refused_republish_says_why_and_changes_nothing(client, csm, make_client, content, confirm, message):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    version = remote_row(package_id).content_version
    response = republish(client, acme, package_id, content(), confirm=confirm)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html and 'name="confirm"' in html
    assert remote_row(package_id).content_version == version and republishes() == []


def test_republish_without_a_csrf_token_is_refused(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    response = client.post(f"/admin/clients/{acme.slug}/packages/{package_id}/republish",
                           data={"confirm": "y", "content": (course_zip("v2"), "v2.zip")},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and republishes() == []


def test_an_oversize_republish_keeps_the_page_and_the_limit(client, csm, make_client, app):
    acme, _ = make_client(name="Acme")
    package_id = admin_build(client, acme)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    response = republish(client, acme, package_id, io.BytesIO(b"x" * (2 * 1024 * 1024)))
    response.request.environ["wsgi.input"].close()
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "larger than the 1 MB an upload may have; nothing was changed" in html and "Republish" in html
    assert republishes() == []


def test_deployed_packages_have_no_republish_and_other_clients_packages_are_404(client, csm, make_client):
    acme, _ = make_client(name="Acme")
    other, _ = make_client(name="Other")
    deployed = admin_build(client, acme, mode="deployed", title="Deployed course")
    page = client.get(f"/admin/clients/{acme.slug}/packages/{deployed}").get_data(as_text=True)
    assert deployed in page and 'name="confirm"' not in page and "build a new package" in page
    response = republish(client, acme, deployed, course_zip("v2"))
    assert response.status_code == 400 and "is not a remote package" in response.get_data(as_text=True)
    assert client.get(f"/admin/clients/{other.slug}/packages/{deployed}").status_code == 404
    remote = admin_build(client, acme, title="Remote course")
    assert republish(client, other, remote, course_zip("v2")).status_code == 404
    assert republishes() == []


@pytest.mark.parametrize(("role", "status"), [("billing", 403), ("client", 404)])
def test_only_admin_staff_see_package_pages(client, make_client, make_staff, login, role, status):
    acme, _ = make_client(name="Acme")
    user = make_staff(role, client=acme if role == "client" else None)
    login(user)
    package_id = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/admin/clients/{acme.slug}/packages/{package_id}").status_code == status
