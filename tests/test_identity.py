"""Identity: normalising student IDs and making pseudonyms (app/identity/student_ids.py)."""

from __future__ import annotations

import uuid

import pytest
from conftest import TEST_PARAMS, beacon_body
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.extensions import db
from app.identity.student_ids import (
    InvalidIdentity,
    Pseudonymiser,
    PseudonymKey,
    PseudonymParams,
    normalise_student_id,
)
from app.models import Client, Learner

URL = "/api/v1/beacons"
SECRET = "identity-test-secret"


def key_for(salt: bytes = b"0123456789abcdef", params: PseudonymParams = TEST_PARAMS,
            uid: uuid.UUID | None = None) -> PseudonymKey:
    return PseudonymKey(client_uid=uid or uuid.UUID(int=1), salt=salt, params=params)


# --- normalisation -----------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("  s-1  ", "s-1"),
    ("\u00a0s-1\u2003", "s-1"),                       # Unicode spaces are trimmed too
    ("Jane.Doe@Example.COM", "jane.doe@example.com"),  # e-mails are case-folded
    ("  JANE@EXAMPLE.COM ", "jane@example.com"),
    ("Straße@Example.com", "strasse@example.com"),     # casefold, not lower
    ("ABC-123", "ABC-123"),                           # non-e-mails keep their case
    ("Abc", "Abc"),
    ("e\u0301", "\u00e9"),                            # NFD -> NFC
    ("Re\u0301ne@x.org", "r\u00e9ne@x.org"),
])
def test_normalisation(raw, expected):
    assert normalise_student_id(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\u00a0\u2003", "s\x00-1", "s-\n1", "a\tb", "\x1b[31m", "s\x7f",
                                 "s\x85s", "\ud800", 42, None])
def test_empty_control_and_non_text_are_refused(raw):
    with pytest.raises(InvalidIdentity):
        normalise_student_id(raw)


def test_over_long_id_is_refused():
    normalise_student_id("x" * 255)
    with pytest.raises(InvalidIdentity):
        normalise_student_id("x" * 256)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_normalisation_is_idempotent(raw):
    try:
        once = normalise_student_id(raw)
    except InvalidIdentity:
        return
    assert normalise_student_id(once) == once
    assert once == once.strip() and once


@settings(max_examples=60, deadline=None)
@given(local=st.from_regex(r"[A-Za-z0-9._]{1,12}", fullmatch=True),
       domain=st.from_regex(r"[A-Za-z]{1,10}\.[A-Za-z]{2,4}", fullmatch=True),
       pad=st.sampled_from(["", " ", "  ", "\u00a0", "\u3000"]))
def test_email_case_and_white_space_variants_normalise_alike(local, domain, pad):
    plain = f"{local}@{domain}"
    variants = [plain, plain.upper(), plain.lower(), pad + plain.swapcase() + pad]
    assert {normalise_student_id(v) for v in variants} == {plain.casefold()}


# --- pseudonyms ---------------------------------------------------------------


def test_pseudonyms_are_deterministic_per_client():
    pseudonymiser = Pseudonymiser(SECRET)
    key = key_for()
    first = pseudonymiser.pseudonym(key, "s-1")
    pseudonymiser.cache_clear()
    assert Pseudonymiser(SECRET).pseudonym(key, "s-1") == first == pseudonymiser.pseudonym(key, "s-1")
    assert first.startswith("p:") and "s-1" not in first
    assert pseudonymiser.pseudonym(key, "s-2") != first


def test_pseudonyms_differ_across_clients_and_secrets():
    pseudonymiser = Pseudonymiser(SECRET)
    base = pseudonymiser.pseudonym(key_for(), "s-1")
    assert pseudonymiser.pseudonym(key_for(uid=uuid.UUID(int=2)), "s-1") != base
    assert pseudonymiser.pseudonym(key_for(salt=b"fedcba9876543210"), "s-1") != base
    assert Pseudonymiser("another secret").pseudonym(key_for(), "s-1") != base


def test_parameters_change_the_pseudonym():
    pseudonymiser = Pseudonymiser(SECRET)
    raised = PseudonymParams(TEST_PARAMS.time_cost + 1, TEST_PARAMS.memory_kib, TEST_PARAMS.parallelism)
    assert pseudonymiser.pseudonym(key_for(params=raised), "s-1") != pseudonymiser.pseudonym(key_for(), "s-1")


def test_raising_defaults_keeps_an_existing_clients_pseudonyms(app, client, make_client):
    """Parameters are recorded per client: new defaults apply to new clients only."""
    acme, key = make_client(anonymised=True)
    assert client.post(URL, json=beacon_body(key, student_id="s-1")).status_code == 204
    stored = db.session.scalar(select(Learner.identity))

    app.config.update(PSEUDONYM_TIME_COST=3, PSEUDONYM_MEMORY_KIB=1024)
    app.extensions["pseudonymiser"].cache_clear()
    app.extensions["client_directory"].clear()
    assert client.post(URL, json=beacon_body(key, student_id="s-1")).status_code == 204
    db.session.rollback()
    assert list(db.session.scalars(select(Learner.identity))) == [stored]
    row = db.session.get(Client, acme.id)
    assert (row.pseudonym_time_cost, row.pseudonym_memory_kib) == (TEST_PARAMS.time_cost, TEST_PARAMS.memory_kib)

    # A client made now records the raised defaults (through the CLI, which reads them).
    from app.cli.common import default_params

    assert default_params() == PseudonymParams(3, 1024, TEST_PARAMS.parallelism)


def test_cache_is_keyed_by_hmac_and_spares_argon2(monkeypatch):
    calls = []
    original = Pseudonymiser._argon2_uncached

    def counting(mac, salt, params):
        calls.append((mac, salt, params))
        return original(mac, salt, params)

    monkeypatch.setattr(Pseudonymiser, "_argon2_uncached", staticmethod(counting))
    pseudonymiser = Pseudonymiser(SECRET, cache_size=10)

    key = key_for()
    marker = "Marker.Student@Example.org"
    first = pseudonymiser.pseudonym(key, marker)
    for _ in range(5):
        assert pseudonymiser.pseudonym(key, marker) == first
    assert len(calls) == 1, "a returning learner must not pay for Argon2 again"
    info = pseudonymiser.cache_info()
    assert (info.hits, info.misses) == (5, 1)

    # What the cache is keyed by: the 32-byte HMAC, never the plain value.
    mac, salt, params = calls[0]
    assert isinstance(mac, bytes) and len(mac) == 32
    assert marker.encode() not in mac and marker.casefold().encode() not in mac
    assert mac == pseudonymiser.mac(key, marker)

    # Bounded: more learners than the cache holds still give the same answers.
    for n in range(30):
        pseudonymiser.pseudonym(key, f"s-{n}")
    assert pseudonymiser.cache_info().currsize <= 10
    assert pseudonymiser.pseudonym(key, marker) == first


def test_returning_learner_skips_argon2_through_the_endpoint(app, client, make_client, monkeypatch):
    _, key = make_client(anonymised=True)
    pseudonymiser = app.extensions["pseudonymiser"]
    pseudonymiser.cache_clear()
    for _ in range(3):
        assert client.post(URL, json=beacon_body(key, student_id="Returning@Example.com")).status_code == 204
    info = pseudonymiser.cache_info()
    assert info.misses == 1 and info.hits >= 2


def test_deleted_salt_stops_new_pseudonyms_with_a_clear_error(app, client, make_client):
    acme, key = make_client(anonymised=True)
    assert client.post(URL, json=beacon_body(key, student_id="s-1")).status_code == 204

    with pytest.raises(InvalidIdentity, match="salt was deleted"):
        Pseudonymiser(SECRET).pseudonym(key_for(salt=b""), "s-1")

    acme = db.session.get(Client, acme.id)
    acme.salt = None  # crypto-shredding
    db.session.commit()
    app.extensions["client_directory"].clear()
    app.extensions["pseudonymiser"].cache_clear()
    response = client.post(URL, json=beacon_body(key, student_id="s-2"))
    assert response.status_code in (400, 403), response.data
    assert response.status_code != 500
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(Learner)) == 1


def test_name_digest_is_keyed_and_never_plain():
    pseudonymiser = Pseudonymiser(SECRET)
    digest = pseudonymiser.name_digest(key_for(), "Doe, Jane")
    assert digest.startswith("n:") and "Jane" not in digest and "jane" not in digest
    assert digest == pseudonymiser.name_digest(key_for(), "Doe, Jane")
    assert digest != pseudonymiser.name_digest(key_for(uid=uuid.UUID(int=9)), "Doe, Jane")
    assert pseudonymiser.name_digest(key_for(), "") == ""


def test_stored_pseudonyms_through_the_endpoint(client, make_client):
    """Same learner, same client: one row; same learner, another client: an unrelated pseudonym."""
    acme, acme_key = make_client(anonymised=True)
    other, other_key = make_client(anonymised=True)
    for key, student_id in ((acme_key, "Jane@Example.com"), (acme_key, " jane@example.COM "),
                            (other_key, "jane@example.com")):
        assert client.post(URL, json=beacon_body(key, student_id=student_id)).status_code == 204
    db.session.rollback()
    rows = {row.client_id: row.identity for row in db.session.scalars(select(Learner))}
    assert set(rows) == {acme.id, other.id}
    assert rows[acme.id] != rows[other.id]
    assert all(identity.startswith("p:") and "jane" not in identity for identity in rows.values())


def test_shredding_a_client_unlinks_its_pseudonyms_for_good(app, client, runner, make_client):
    """`client shred-pseudonyms`: the salt goes, counts stay, nobody returning is recognised or recorded."""
    from app.models import AuditEntry

    acme, key = make_client(name="Acme Anon", anonymised=True)
    assert client.post(URL, json=beacon_body(key, student_id="s-1", student_name="Doe, Jane")).status_code == 204
    refused = runner.invoke(args=["client", "shred-pseudonyms", acme.slug, "--confirm-name", "Someone Else"])
    assert refused.exit_code != 0 and "does not match" in refused.output
    result = runner.invoke(args=["client", "shred-pseudonyms", acme.slug, "--confirm-name", "Acme Anon", "--json"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    acme = db.session.get(Client, acme.id)
    assert acme.salt is None and acme.active is False
    assert db.session.scalar(select(db.func.count()).select_from(Learner)) == 1
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.shred_pseudonyms"))

    # Even reactivated, it records no learner it cannot pseudonymise.
    acme.active = True
    db.session.commit()
    app.extensions["client_directory"].clear()
    response = client.post(URL, json=beacon_body(key, student_id="s-1"))
    assert response.status_code == 403 and response.json["error"] == "pseudonyms_shredded"
    assert Pseudonymiser(SECRET).name_digest(None, "Doe, Jane") == ""
    again = runner.invoke(args=["client", "shred-pseudonyms", acme.slug, "--confirm-name", "Acme Anon"])
    assert again.exit_code != 0 and "already" in again.output
