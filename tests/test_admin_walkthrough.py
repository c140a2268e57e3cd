"""What a walkthrough as CSM found: duplicate names, strict origins, search, audit paging and export, links."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from billing_helpers import read_csv
from conftest import beacon_body, csrf_token_from
from sqlalchemy import select

from app import audit as audit_service
from app.clients import services as client_service
from app.extensions import db
from app.models import AuditEntry, Client


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm", email="casey@vendor.example")
    login(user)
    return user


def token(client, url="/admin/clients/new") -> str:
    return csrf_token_from(client.get(url).get_data(as_text=True))


def new_client(client, **fields):
    data = {"csrf_token": token(client), "name": "Acme Corp", "active": "y", "licence": "subscription", **fields}
    return client.post("/admin/clients/new", data=data)


def test_a_name_in_use_asks_for_confirmation(client, csm, make_client):
    first, _ = make_client(name="Acme Corp")
    refused = new_client(client)
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "exists already (acme-corp)" in html and 'name="confirm_duplicate"' in html
    assert db.session.scalar(select(Client.id).where(Client.slug == "acme-corp-2")) is None
    assert new_client(client, name="acme corp").status_code == 400   # case does not make it another name
    confirmed = new_client(client, confirm_duplicate="y")
    assert confirmed.status_code == 200
    assert db.session.scalar(select(Client.name).where(Client.slug == "acme-corp-2")) == "Acme Corp"
    # Renaming another client to a name in use asks too.
    other, _ = make_client(name="Globex")
    edit = f"/admin/clients/{other.slug}/edit"
    data = {"csrf_token": token(client, edit), "name": "Acme Corp", "active": "y", "licence": "subscription"}
    assert client.post(edit, data=data).status_code == 400
    assert client.post(edit, data={**data, "confirm_duplicate": "y"}).status_code == 302
    # Both are told apart by slug in the list, the overview and the audit filter.
    listing = client.get("/admin/").get_data(as_text=True)
    assert all(slug in listing for slug in ("acme-corp", "acme-corp-2", "globex"))
    audit_page = client.get("/admin/audit").get_data(as_text=True)
    assert "Acme Corp (acme-corp)" in audit_page and "Acme Corp (acme-corp-2)" in audit_page
    overview = client.get("/billing/").get_data(as_text=True)
    assert 'data-slug="acme-corp-2"' in overview and "acme-corp-2</div>" in overview
    assert first.slug == "acme-corp"


@pytest.mark.parametrize(("origin", "reason"), [
    ("http://lms.acme.example", "must use https://"),
    ("https://*.acme.example", "wildcards are not allowed"),
    ("*", "wildcards are not allowed"),
    ("https://lms.acme.example/moodle", "no path"),
    ("https://lms.acme.example?x=1", "no path"),
    ("https://user@lms.acme.example", "no path"),
    ("https://lms.acme.example:0", "bad port"),
    ("https://lms.acme.example:70000", "bad port"),
    ("lms.acme.example", "must look like"),
    ("ftp://lms.acme.example", "must look like"),
])
def test_origins_are_https_host_port_only(client, csm, origin, reason):
    with pytest.raises(client_service.ClientError, match=reason):
        client_service.normalise_origin(origin)
    response = new_client(client, name="Origin Test", origins=origin)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert db.session.scalar(select(Client.id).where(Client.name == "Origin Test")) is None


def test_origins_accepted_and_written_as_browsers_send_them():
    assert client_service.normalise_origin("HTTPS://LMS.Acme.example:443/") == "https://lms.acme.example"
    assert client_service.normalise_origin("https://lms.acme.example:8443") == "https://lms.acme.example:8443"
    assert client_service.normalise_origin("http://localhost:8080", local_http=True) == "http://localhost:8080"
    with pytest.raises(client_service.ClientError, match="https"):
        client_service.normalise_origin("http://localhost:8080")          # production
    with pytest.raises(client_service.ClientError, match="https"):
        client_service.normalise_origin("http://lms.example", local_http=True)


def test_development_form_takes_http_localhost(client, csm):
    response = new_client(client, name="Local LMS", origins="http://localhost:8080")
    assert response.status_code == 200
    local = db.session.scalar(select(Client).where(Client.name == "Local LMS"))
    assert local.allowed_origins == ["http://localhost:8080"]


def test_client_list_search_and_filter(client, csm, make_client):
    make_client(name="Acme Corp")
    make_client(name="Globex", anonymised=True)
    make_client(name="Initech", licence="perpetual", active=False)

    def names(query):
        html = client.get(f"/admin/?{query}").get_data(as_text=True)
        return [n for n in ("Acme Corp", "Globex", "Initech") if f">{n}</a>" in html]

    assert names("") == ["Acme Corp", "Globex", "Initech"]
    assert names("q=glo") == ["Globex"]
    assert names("q=acme-corp") == ["Acme Corp"]          # slugs match too
    assert names("show=anonymised") == ["Globex"]
    assert names("show=inactive") == ["Initech"]
    assert names("show=perpetual&q=ini") == ["Initech"]
    empty = client.get("/admin/?q=nobody").get_data(as_text=True)
    assert 'id="no-match"' in empty and "nobody" in empty
    assert client.get("/admin/?show=bogus").status_code == 400


def test_admin_and_billing_link_each_other(client, csm, make_client):
    acme, _ = make_client(name="Acme Corp")
    detail = client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    assert f'href="/billing/{acme.slug}" id="billing-link"' in detail
    billing = client.get(f"/billing/{acme.slug}").get_data(as_text=True)
    assert f'id="admin-link" href="/admin/clients/{acme.slug}"' in billing


def test_billing_staff_get_no_admin_link(client, make_staff, login, make_client):
    acme, _ = make_client(name="Acme Corp")
    login(make_staff("billing"))
    assert 'id="admin-link"' not in client.get(f"/billing/{acme.slug}").get_data(as_text=True)


def test_audit_log_pages_date_range_and_csv(client, csm, make_client):
    acme, _ = make_client(name="Acme Corp")
    for day in range(1, 31):
        with time_machine.travel(dt.datetime(2026, 11, day, 12, tzinfo=dt.UTC), tick=False):
            for i in range(5):
                audit_service.record(db.session, "ops@vendor.example", "test.change", acme.id, {"n": day},
                                     {"n": i})
            db.session.commit()
    total = db.session.query(AuditEntry).count()       # 150 plus client.create and staff.create
    first = client.get("/admin/audit").get_data(as_text=True)
    assert f"{total} entries, page 1 of 2" in first and 'rel="next"' in first
    second = client.get("/admin/audit?page=2").get_data(as_text=True)
    assert 'rel="prev"' in second and "page 2 of 2" in second
    ranged = client.get(f"/admin/audit?client={acme.slug}&from=2026-11-10&to=2026-11-11").get_data(as_text=True)
    assert "10 entries" in ranged and "2026-11-12" not in ranged and "2026-11-09" not in ranged
    export = client.get(f"/admin/audit.csv?client={acme.slug}&from=2026-11-10&to=2026-11-11")
    assert export.headers["Content-Disposition"].startswith('attachment; filename="audit-acme-corp-2026-11-10')
    rows = read_csv(export)
    assert len(rows) == 10 and {r["client"] for r in rows} == {"acme-corp"}
    assert rows[0]["created_at"] == "2026-11-11T12:00:00Z" and rows[0]["before"] == '{"n": 11}'
    assert client.get("/admin/audit?from=2026-11-12&to=2026-11-01").status_code == 400
    assert client.get("/admin/audit?from=yesterday").status_code == 400


def test_beacons_still_work_with_a_strict_origin(client, make_client):
    acme, key = make_client(name="Acme Corp", origins=["https://lms.acme.example"])
    assert client.post("/api/v1/beacons", json=beacon_body(key),
                       headers={"Origin": "https://lms.acme.example"}).status_code == 204


@pytest.fixture
def small_uploads(app):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024      # 1 MB, so the test sends little


def test_an_oversize_upload_returns_to_the_form_with_the_limit(client, csm, make_client, small_uploads):
    import io

    acme, _ = make_client(name="Acme Corp")
    url = f"/admin/clients/{acme.slug}/packages"
    page = client.get(url).get_data(as_text=True)
    assert "at most 1 MB" in page
    response = client.post(url, data={"csrf_token": csrf_token_from(page), "course_title": "Big", "scorm_version": "1.2",
                                      "mode": "deployed", "content": (io.BytesIO(b"x" * (2 * 1024 * 1024)), "big.zip")},
                           content_type="multipart/form-data")
    # The server refused the body unread, so the test client's spooled copy of it is still open.
    response.request.environ["wsgi.input"].close()
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "larger than the 1 MB an upload may have" in html and 'name="course_title"' in html
    from app.models import PackageIssue
    assert db.session.scalar(select(PackageIssue.id)) is None


def _admin_build(client, acme, course: str) -> tuple[str, str]:
    """Build a package through the admin; return (package_id, the key in it)."""
    import io
    import zipfile

    from test_packages import tracker_config

    url = f"/admin/clients/{acme.slug}/packages"
    response = client.post(url, data={"csrf_token": token(client, url), "course_title": course,
                                      "scorm_version": "1.2", "mode": "deployed"})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    config = tracker_config(zipfile.ZipFile(io.BytesIO(response.data)))
    return config["packageId"], config["key"]


def test_each_package_records_its_key_and_can_be_revoked_alone(client, csm, make_client):
    from app.models import ClientKey, PackageIssue

    acme, own_key = make_client(name="Acme Corp")
    ethics_id, ethics_key = _admin_build(client, acme, "Ethics")
    fire_id, fire_key = _admin_build(client, acme, "Fire Safety")
    # Each issue records its key; the client page says which package carries which key.
    keys = {k.key_prefix: k for k in db.session.scalars(select(ClientKey))}
    assert keys[ethics_key[:8]].package_issue.course_title == "Ethics"
    assert keys[fire_key[:8]].package_issue.course_title == "Fire Safety"
    assert keys[own_key[:8]].package_issue is None
    detail = client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)
    ethics_row = detail.split(f'data-key="{ethics_key[:8]}"')[1].split("</tr>")[0]
    assert "Ethics" in ethics_row and "current" in ethics_row
    assert "in no package" in detail.split(f'data-key="{own_key[:8]}"')[1].split("</tr>")[0]

    packages = client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)
    issue = db.session.scalar(select(PackageIssue).where(PackageIssue.course_title == "Ethics"))
    revoke = f"/admin/clients/{acme.slug}/packages/{ethics_id}/revoke-key"
    # Not confirmed: nothing changes.
    client.post(revoke, data={"csrf_token": csrf_token_from(packages)})
    assert client.post("/api/v1/beacons", json=beacon_body(ethics_key, course="Ethics")).status_code == 204
    # Confirmed: that package's beacons get 403, the other package and the client's key keep working.
    assert client.post(revoke, data={"csrf_token": csrf_token_from(packages), f"r{issue.id}-confirm": "y"}
                       ).status_code == 302
    refused = client.post("/api/v1/beacons", json=beacon_body(ethics_key, course="Ethics"))
    assert refused.status_code == 403
    assert client.post("/api/v1/beacons", json=beacon_body(fire_key, course="Fire Safety")).status_code == 204
    assert client.post("/api/v1/beacons", json=beacon_body(own_key)).status_code == 204
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "package.revoke_key"))
    assert entry.before["key_prefixes"] == [ethics_key[:8]] and entry.actor == "casey@vendor.example"
    page = client.get(f"/admin/clients/{acme.slug}/packages").get_data(as_text=True)
    assert "revoked" in page.split(f'data-package="{ethics_id}"')[1].split("</tr>")[0]
    # Twice: a clear message, nothing changes; a package of another client: 404.
    client.post(revoke, data={"csrf_token": csrf_token_from(page), f"r{issue.id}-confirm": "y"})
    other, _ = make_client(name="Other")
    assert client.post(f"/admin/clients/{other.slug}/packages/{fire_id}/revoke-key",
                       data={"csrf_token": csrf_token_from(page)}).status_code == 404
    assert len(list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "package.revoke_key")))) == 1
