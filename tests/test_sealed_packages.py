"""Sealed packages, server side: a sealed client takes only sealed IDs, the offline seal command,
the sealing page's headers. The browser side (the page, the tracker, the launcher) is in
test_sealed_browser.py.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest
from conftest import beacon_body
from sqlalchemy import func, select

from app import packages
from app.clients import services as client_service
from app.clients.services import ClientError
from app.extensions import db
from app.identity.student_ids import InvalidIdentity
from app.learners import anonymisation
from app.learners.held_back_models import HeldBackBeacon
from app.models import AuditEntry, Event, Learner
from app.packages import sealing

URL = "/api/v1/beacons"
KEY = "x" * 43  # 32 bytes of base64url: any 43 characters of the alphabet
SEALED = "sealed:v1:" + "A" * 43


def stored() -> tuple[int, int]:
    db.session.rollback()
    return (db.session.scalar(select(func.count()).select_from(Learner)),
            db.session.scalar(select(func.count()).select_from(Event)))


def test_a_sealed_client_refuses_plain_ids_and_names_and_stores_nothing(client, make_client):
    sealed_client, key = make_client(sealed=True)
    assert sealed_client.anonymised  # sealed implies anonymised: the sealed value is pseudonymised again
    plain = client.post(URL, json=beacon_body(key, student_id="jane@example.com", student_name=""))
    assert plain.status_code == 400
    assert plain.get_json()["error"] == "invalid_beacon"
    assert "sealed" in plain.get_json()["message"] and "jane" not in plain.get_data(as_text=True)
    named = client.post(URL, json=beacon_body(key, student_id=SEALED, student_name="Doe, Jane"))
    assert named.status_code == 400
    assert "Doe" not in named.get_data(as_text=True)
    assert stored() == (0, 0)

    ok = client.post(URL, json=beacon_body(key, student_id=SEALED, student_name="sealed:v1:" + "B" * 43))
    assert ok.status_code == 204
    learner = db.session.scalar(select(Learner))
    assert learner.identity.startswith("p:") and learner.pseudonymised
    assert learner.name.startswith("n:")
    assert stored() == (1, 1)


def test_a_placeholder_flagged_by_a_sealed_package_is_held_back(client, make_client):
    """The server cannot read a sealed "undefined": the tracker's flag holds the beacon back instead."""
    _, key = make_client(sealed=True)
    flagged = client.post(URL, json=beacon_body(key, student_id=SEALED, student_name="", placeholder=True))
    assert flagged.status_code == 204
    assert stored() == (0, 0)  # counted nowhere
    held = db.session.scalars(select(HeldBackBeacon)).all()
    assert [row.placeholder for row in held] == ["(flagged by the sealed package)"]
    assert SEALED not in {held[0].identity}  # stored as a pseudonym of the sealed value, like any learner
    # A client whose list a CSM emptied holds nothing back, flagged or not.
    emptied, emptied_key = make_client(name="Emptied", sealed=True)
    emptied.placeholder_ids = []
    db.session.commit()
    kept = client.post(URL, json=beacon_body(emptied_key, student_id=SEALED, student_name="", placeholder=True))
    assert kept.status_code == 204 and stored() == (1, 1)
    # The same flag from a package of a client that does not seal is not trusted: the list decides.
    _, plain_key = make_client(name="Plain")
    counted = client.post(URL, json=beacon_body(plain_key, student_id="s-1", student_name="", placeholder=True))
    assert counted.status_code == 204 and db.session.scalar(select(func.count()).select_from(Event)) == 2


def test_a_sealed_id_for_a_client_that_does_not_seal_is_refused(client, make_client):
    for anonymised in (False, True):
        _plain_client, key = make_client(anonymised=anonymised)
        answer = client.post(URL, json=beacon_body(key, student_id=SEALED))
        assert answer.status_code == 400, anonymised
    assert stored() == (0, 0)


def test_sealing_needs_an_anonymised_client_and_is_audited(app, make_client):
    verbatim, _ = make_client()
    with pytest.raises(ClientError, match="anonymised"):
        client_service.set_sealed(db.session, verbatim, sealed=True, actor="test")
    anonymised, _ = make_client(anonymised=True)
    client_service.set_sealed(db.session, anonymised, sealed=True, actor="test")
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.sealed")).after == {"sealed": True}
    with pytest.raises(ClientError, match="sealed"):
        anonymisation.switch_mode(db.session, app.extensions["pseudonymiser"], anonymised, anonymised=False,
                                  actor="test")


def build_zip(client, mode="deployed", version="1.2", **extra) -> bytes:
    data, _ = packages.package_bytes(db.session, client=client, course_title="Fire Safety", scorm_version=version,
                                     server_url="https://usage.example.com", issued_by="test", mode=mode,
                                     **extra)
    return data


def sealed_file(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in sealing.SEALED_FILES if n in archive.namelist())
        return archive.read(name).decode("utf-8")


def test_offline_seal_command_writes_the_derived_keys_and_nothing_else(runner, make_client, tmp_path):
    sealed_client, _ = make_client(sealed=True)
    unsealed = build_zip(sealed_client)
    assert sealing.SEAL_MARK in sealed_file(unsealed)
    (tmp_path / "in.zip").write_bytes(unsealed)
    (tmp_path / "key.txt").write_text(KEY + "\n")
    result = runner.invoke(args=["package", "seal", "--key-file", str(tmp_path / "key.txt"), "--in",
                                 str(tmp_path / "in.zip"), "--out", str(tmp_path / "out.zip"), "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    sealed_zip = (tmp_path / "out.zip").read_bytes()
    tracker = sealed_file(sealed_zip)
    seal = sealing.package_seal(sealing.read_client_key(KEY))
    assert done == {"out": str(tmp_path / "out.zip"), "kid": seal["kid"], "file": "scorm-usage-tracker.js"}
    assert f"var SEAL = {json.dumps(seal, separators=(',', ':'))};" in tracker
    assert KEY not in tracker  # the package holds derived keys, never the client's key
    assert tracker.replace(json.dumps(seal, separators=(",", ":")), sealing.SEAL_MARK) == sealed_file(unsealed)
    with zipfile.ZipFile(io.BytesIO(unsealed)) as before, zipfile.ZipFile(io.BytesIO(sealed_zip)) as after:
        assert after.testzip() is None
        assert before.namelist() == after.namelist()
        for name in before.namelist():
            if name != "scorm-usage-tracker.js":
                assert before.read(name) == after.read(name)

    again = runner.invoke(args=["package", "seal", "--key-file", str(tmp_path / "key.txt"), "--in",
                                str(tmp_path / "out.zip"), "--out", str(tmp_path / "again.zip")])
    assert again.exit_code != 0 and f"sealed already (key {seal['kid']})" in again.output
    assert not (tmp_path / "again.zip").exists()


def test_a_package_of_a_client_that_does_not_seal_cannot_be_sealed(runner, make_client, tmp_path):
    plain_client, _ = make_client(anonymised=True)
    data = build_zip(plain_client)
    assert sealing.SEAL_MARK not in sealed_file(data) and "var SEAL = null;" in sealed_file(data)
    (tmp_path / "in.zip").write_bytes(data)
    (tmp_path / "key.txt").write_text(KEY)
    result = runner.invoke(args=["package", "seal", "--key-file", str(tmp_path / "key.txt"), "--in",
                                 str(tmp_path / "in.zip"), "--out", str(tmp_path / "out.zip")])
    assert result.exit_code != 0 and "not sealed" in result.output


def test_remote_package_seals_its_launcher_and_the_player_tracker_only_relays(app, client, make_client, tmp_path):
    sealed_client, _ = make_client(sealed=True)
    data = build_zip(sealed_client, mode="remote", version="2004", content_url="https://content.example.com")
    launcher = sealed_file(data)
    assert sealing.SEAL_MARK in launcher and '"sealed": true' in launcher
    out = io.BytesIO()
    sealing.seal_zip(io.BytesIO(data), out, sealing.read_client_key(KEY))
    assert '"kid":"' in sealed_file(out.getvalue())
    # The player's tracker, served from our content origin, holds no key: the launcher sealed the learner.
    tracker = packages.configured_tracker(beacon_url="https://u.example/api/v1/beacons", key="k", course="c",
                                          package_id=uuid.uuid4(), scorm_version="2004", sealed="relayed")
    assert "var SEAL = null;" in tracker.decode() and '"sealed": "relayed"' in tracker.decode()


def test_sealed_id_command_and_erasure_by_sealed_id(runner, client, make_client, tmp_path):
    sealed_client, key = make_client(sealed=True)
    (tmp_path / "key.txt").write_text(KEY)
    result = runner.invoke(args=["package", "sealed-id", "--key-file", str(tmp_path / "key.txt"),
                                 "--student-id", "  Jane@Example.COM "])
    assert result.exit_code == 0, result.output
    sealed_id = result.output.strip()
    assert sealed_id == sealing.sealed_student_id(sealing.read_client_key(KEY), "jane@example.com")
    assert client.post(URL, json=beacon_body(key, student_id=sealed_id, student_name="")).status_code == 204
    assert stored() == (1, 1)

    refused = runner.invoke(args=["learner", "erase", "--client", sealed_client.slug, "--student-id",
                                  "jane@example.com"])
    assert refused.exit_code != 0 and "sealed ID" in refused.output
    assert stored() == (1, 1)
    erased = runner.invoke(args=["learner", "erase", "--client", sealed_client.slug, "--student-id", sealed_id,
                                 "--json"])
    assert erased.exit_code == 0 and json.loads(erased.output)["erased"] == 1
    assert stored() == (0, 0)


def test_sealed_id_of_an_id_the_server_refuses_is_refused_too():
    with pytest.raises(InvalidIdentity):
        sealing.sealed_student_id(sealing.read_client_key(KEY), " \u200b ")


def test_cli_creates_and_switches_sealed_clients(runner, make_client):
    result = runner.invoke(args=["client", "create", "--name", "Sealed Org", "--sealed", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["sealed"] is True and made["anonymised"] is True
    off = runner.invoke(args=["client", "set-sealed", made["slug"], "--unsealed", "--json"])
    assert off.exit_code == 0 and json.loads(off.output) == {"slug": made["slug"], "sealed": False}
    verbatim, _ = make_client()
    refused = runner.invoke(args=["client", "set-sealed", verbatim.slug, "--sealed"])
    assert refused.exit_code != 0 and "anonymised" in refused.output


def test_the_sealing_page_may_connect_nowhere_and_needs_no_sign_in(client):
    page = client.get("/seal")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "connect-src 'none'" in policy and "form-action 'none'" in policy and "default-src 'none'" in policy
    html = page.get_data(as_text=True)
    assert "/seal/sealing.js" in html and "seal.js" in html
    library = client.get("/seal/sealing.js")
    assert library.status_code == 200 and library.mimetype == "text/javascript"
    assert "var ScormUsageSeal" in library.get_data(as_text=True)
    assert "/*@SEAL_TABLES@*/" not in library.get_data(as_text=True)


def test_the_seat_check_of_a_sealed_client_refuses_a_plain_id(app, client, make_client):
    sealed_client, _ = make_client(sealed=True)
    data, built = packages.package_bytes(db.session, client=sealed_client, course_title="Fire Safety",
                                         scorm_version="1.2", server_url="https://usage.example.com",
                                         issued_by="test", mode="remote")
    seat = f"/{built.issue.package_id}/seat"

    def ask(student_id):
        return client.post(seat, base_url=app.config["CONTENT_URL"], data=json.dumps({"student_id": student_id}),
                           headers={"Content-Type": "text/plain", "Origin": "https://lms.example.com"})

    assert ask("jane@example.com").status_code == 400
    assert ask(SEALED).json == {"allowed": True}


def test_the_admin_says_a_sealed_clients_packages_need_the_clients_seal(client, make_client, make_staff, login):
    login(make_staff("csm", email="casey@vendor.example"))
    sealed_client, _ = make_client(sealed=True)
    overview = client.get(f"/admin/clients/{sealed_client.slug}").get_data(as_text=True)
    assert ">sealed</span>" in overview
    page = client.get(f"/admin/clients/{sealed_client.slug}/packages").get_data(as_text=True)
    assert 'href="/seal"' in page and "counts nobody until the client has sealed it" in page
    plain_client, _ = make_client(anonymised=True)
    assert 'href="/seal"' not in client.get(f"/admin/clients/{plain_client.slug}/packages").get_data(as_text=True)


def test_the_golive_check_of_a_sealed_client_says_what_it_cannot_compare(app, make_client):
    from app.ingest import golive

    sealed_client, _ = make_client(sealed=True)
    report = golive.health_report(db.session, app.extensions["pseudonymiser"], sealed_client)
    assert any("sealed" in note and "flag placeholders" in note for note in report.not_checked)
    plain_client, _ = make_client(anonymised=True)
    report = golive.health_report(db.session, app.extensions["pseudonymiser"], plain_client)
    assert not any("sealed" in note for note in report.not_checked)
