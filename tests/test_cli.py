"""The operator's commands (`flask --app wsgi ...`), run through Flask's CliRunner."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat

import pytest
from conftest import beacon_body
from sqlalchemy import func, select

from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import AuditEntry, Client, StaffUser
from app.staff import services as staff_service

BEACONS = "/api/v1/beacons"
PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """Production-cost Argon2 for staff passwords would dominate this module's time."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(staff_service, "password_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


def invoke_json(runner, *args, **kwargs) -> dict:
    result = runner.invoke(args=list(args), **kwargs)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_client_create_json_with_every_option(runner, client):
    data = invoke_json(runner, "client", "create", "--name", "Acme Corp", "--anonymised", "--licence", "subscription",
                       "--origin", "https://lms.acme.example", "--origin", "HTTPS://Moodle.Acme.example:443/",
                       "--seat-limit", "250", "--json")
    assert data["slug"] == "acme-corp"
    assert data["key"].startswith("ck_") and len(data["key"]) > 20
    assert data["anonymised"] is True and data["seat_limit"] == 250 and data["licence"] == "subscription"
    assert data["origins"] == ["https://lms.acme.example", "https://moodle.acme.example"]

    row = db.session.scalar(select(Client).where(Client.slug == "acme-corp"))
    assert row.anonymised and row.salt
    # --seat-limit gives the client a licence term (today, for one year), not a setting of its own.
    today = dt.datetime.now(dt.UTC).date()
    [term] = licence_terms.terms(db.session, row.id)
    assert (term.starts_on, term.seat_limit, term.seat_window) == (today, 250, "term")
    assert term.ends_on == licence_terms.first_term_dates(today, None, None)[1] > today
    assert data["term"] == term.as_dict()
    assert data["key"] not in json.dumps([k.key_hash for k in row.keys])  # stored hashed
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "client.create")) == 1

    # The key works, from an allowed origin only.
    ok = client.post(BEACONS, json=beacon_body(data["key"]), headers={"Origin": "https://moodle.acme.example"})
    assert ok.status_code == 204
    refused = client.post(BEACONS, json=beacon_body(data["key"]), headers={"Origin": "https://other.example"})
    assert refused.status_code == 403


def test_client_create_without_origin_accepts_any(runner, client):
    data = invoke_json(runner, "client", "create", "--name", "Open Org", "--json")
    assert data["origins"] == [] and data["anonymised"] is False and data["licence"] == "subscription"
    response = client.post(BEACONS, json=beacon_body(data["key"]), headers={"Origin": "https://any.example"})
    assert response.status_code == 204


def test_client_create_plain_output_and_perpetual_licence(runner, client):
    result = runner.invoke(args=["client", "create", "--name", "Perp Org", "--licence", "perpetual"])
    assert result.exit_code == 0
    key = re.search(r"(ck_\S+)", result.output).group(1)
    assert client.post(BEACONS, json=beacon_body(key)).json["error"] == "untracked_licence"


def test_client_slugs_stay_unique(runner):
    first = invoke_json(runner, "client", "create", "--name", "Acme", "--json")
    # A name in use is refused unless confirmed; then the slugs tell the two apart.
    refused = runner.invoke(args=["client", "create", "--name", "ACME", "--json"])
    assert refused.exit_code != 0 and "--allow-duplicate-name" in refused.output and "acme" in refused.output
    second = invoke_json(runner, "client", "create", "--name", "ACME", "--allow-duplicate-name", "--json")
    assert first["slug"] == "acme" and second["slug"] == "acme-2"


@pytest.mark.parametrize("args, needle", [
    (["--origin", "lms.acme.example"], "origin"),
    (["--origin", "ftp://lms.acme.example"], "origin"),
    (["--origin", "https://lms.acme.example/path"], "path"),
    (["--origin", "https://lms.acme.example:99999"], "port"),
    (["--origin", "http://lms.acme.example"], "https"),
    (["--origin", "https://*.acme.example"], "wildcard"),
    (["--origin", "https://lms.acme.example/?x=1"], "path"),
    (["--licence", "forever"], "licence"),
    (["--seat-limit", "-1"], "seat-limit"),
], ids=["no-scheme", "ftp", "path", "bad-port", "http", "wildcard", "query", "bad-licence", "negative-seats"])
def test_client_create_bad_input_is_an_error_exit(runner, args, needle):
    result = runner.invoke(args=["client", "create", "--name", "Bad", *args, "--json"])
    assert result.exit_code != 0
    assert needle in result.output.lower()
    assert db.session.scalar(select(func.count()).select_from(Client)) == 0


def test_staff_create_reads_the_password_from_stdin(runner, login):
    data = invoke_json(runner, "staff", "create", "Ops@Vendor.example", "--role", "admin", "--password-stdin", "--json",
                       input=PASSWORD + "\n")
    assert data == {"email": "ops@vendor.example", "role": "admin", "client": None}
    user = db.session.scalar(select(StaffUser))
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    login(user, PASSWORD)


def test_staff_create_client_role_needs_client(runner, make_client):
    acme, _ = make_client(name="Acme")
    result = runner.invoke(args=["staff", "create", "c@acme.example", "--role", "client", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert result.exit_code != 0 and "--client" in result.output
    assert db.session.scalar(select(func.count()).select_from(StaffUser)) == 0
    data = invoke_json(runner, "staff", "create", "c@acme.example", "--role", "client", "--client", acme.slug,
                       "--password-stdin", "--json", input=PASSWORD + "\n")
    assert data["client"] == acme.slug
    admin_with_client = runner.invoke(args=["staff", "create", "a@v.example", "--role", "admin", "--client",
                                            acme.slug, "--password-stdin"], input=PASSWORD + "\n")
    assert admin_with_client.exit_code != 0


@pytest.mark.parametrize("args, stdin, needle", [
    (["--role", "admin", "--password-stdin"], "short\n", "12"),
    (["--role", "wizard", "--password-stdin"], PASSWORD + "\n", "role"),
    (["--role", "client", "--client", "no-such", "--password-stdin"], PASSWORD + "\n", "no client"),
])
def test_staff_create_errors(runner, args, stdin, needle):
    result = runner.invoke(args=["staff", "create", "x@vendor.example", *args], input=stdin)
    assert result.exit_code != 0 and needle in result.output


def test_staff_create_twice_is_refused(runner):
    invoke_json(runner, "staff", "create", "x@v.example", "--role", "billing", "--password-stdin", "--json",
                input=PASSWORD + "\n")
    again = runner.invoke(args=["staff", "create", "X@V.example", "--role", "billing", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert again.exit_code != 0 and "exists" in again.output


def test_staff_create_without_stdin_generates_a_password(runner, login):
    data = invoke_json(runner, "staff", "create", "gen@v.example", "--role", "csm", "--json")
    assert len(data["password"]) >= 12
    login(db.session.scalar(select(StaffUser)), data["password"])


def test_token_create_gives_a_working_bearer_token(runner, client, make_client):
    acme, key = make_client(name="Acme")
    client.post(BEACONS, json=beacon_body(key))
    invoke_json(runner, "staff", "create", "bill@v.example", "--role", "billing", "--password-stdin", "--json",
                input=PASSWORD + "\n")
    data = invoke_json(runner, "token", "create", "BILL@v.example", "--json")
    assert data["token"].startswith("tk_") and data["role"] == "billing"
    today = dt.datetime.now(dt.UTC).date()
    response = client.get(f"/api/v1/clients/{acme.slug}/usage?from={today.replace(day=1)}&to={today}",
                          headers={"Authorization": f"Bearer {data['token']}"})
    assert response.status_code == 200 and response.json["unique_users"] == 1

    plain = runner.invoke(args=["token", "create", "bill@v.example"])
    assert plain.exit_code == 0 and plain.output.strip().startswith("tk_")
    unknown = runner.invoke(args=["token", "create", "nobody@v.example", "--json"])
    assert unknown.exit_code != 0 and "no staff user" in unknown.output


def test_client_token_from_cli_is_scoped(runner, client, make_client):
    acme, _ = make_client(name="Acme")
    other, _ = make_client(name="Other")
    invoke_json(runner, "staff", "create", "c@acme.example", "--role", "client", "--client", acme.slug,
                "--password-stdin", "--json", input=PASSWORD + "\n")
    token = invoke_json(runner, "token", "create", "c@acme.example", "--json")["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/v1/clients/{acme.slug}/usage?from=2026-01-01&to=2026-01-31", headers=headers).status_code == 200
    assert client.get(f"/api/v1/clients/{other.slug}/usage?from=2026-01-01&to=2026-01-31", headers=headers).status_code == 404


def test_learner_erase_via_cli(runner, client, make_client):
    """More in test_privacy.py (both modes, counts); here the command's own contract."""
    acme, key = make_client(name="Acme")
    client.post(BEACONS, json=beacon_body(key, student_id="Jane@Example.com"))
    result = runner.invoke(args=["learner", "erase", "--client", acme.slug, "--student-id", "jane@example.com"])
    assert result.exit_code == 0 and "Erased 1" in result.output


def test_demo_init_is_idempotent_and_prints_credentials_once(runner, client, login):
    first = runner.invoke(args=["demo", "init"])
    assert first.exit_code == 0, first.output
    password = re.search(r"password:\s+(\S+)", first.output).group(1)
    key = re.search(r"beacon key:\s+(ck_\S+)", first.output).group(1)
    assert "admin@example.com" in first.output

    second = runner.invoke(args=["demo", "init"])
    assert second.exit_code == 0
    assert password not in second.output and key not in second.output
    assert "exists already" in second.output
    assert db.session.scalar(select(func.count()).select_from(StaffUser)) == 1
    assert db.session.scalar(select(func.count()).select_from(Client)) == 1

    # What was printed works.
    assert client.post(BEACONS, json=beacon_body(key)).status_code == 204
    login(db.session.scalar(select(StaffUser)), password)


def test_tls_self_signed(runner, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    result = runner.invoke(args=["tls", "self-signed", "--cert", str(cert_path), "--key", str(key_path)])
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()

    before = cert_path.read_bytes()
    again = runner.invoke(args=["tls", "self-signed", "--cert", str(cert_path), "--key", str(key_path)])
    assert again.exit_code == 0 and "Using" in again.output
    assert cert_path.read_bytes() == before


def test_client_list_json(runner, make_client):
    make_client(name="Acme", anonymised=True)
    data = invoke_json(runner, "client", "list", "--json")
    assert [c["slug"] for c in data["clients"]] == ["acme"] and data["clients"][0]["anonymised"] is True
