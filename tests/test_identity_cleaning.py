"""LMS quirks that must not cost a billable launch: IDs padded with tabs and newlines, names
carrying tabs, newlines, controls or invisible characters, and IDs differing only by invisible
format characters (zero-width, bidi overrides) are one learner, counted once and stored clean.
"""

from __future__ import annotations

import unicodedata

import pytest
from conftest import beacon_body
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from app.identity.student_ids import InvalidIdentity, normalise_name, normalise_student_id
from app.ingest.erasure import erase_learner
from app.models import DailyUsage, Learner

URL = "/api/v1/beacons"
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u202d", "\u2066", "\u2069"]


@pytest.mark.parametrize("raw", ["s-1\t", "\ts-1", "s-1\n", "\r\ns-1\r\n", " \t s-1 \n ", "s\u200b-1",
                                 "\u202es-1", "s-1\ufeff", "\u2066s-1\u2069", "s\u00ad-1\x85"])
def test_padded_and_invisible_ids_are_one_learner(raw):
    assert normalise_student_id(raw) == "s-1"


@pytest.mark.parametrize("raw, clean", [
    ("Doe,\tJane", "Doe, Jane"), ("Doe, Jane\n", "Doe, Jane"), ("Doe,\r\n  Jane", "Doe, Jane"),
    ("Do\u200be, Ja\u202ene", "Doe, Jane"), ("Jane\x07 Doe\x00", "Jane Doe"), ("Jane \udfff", "Jane"),
    ("\u2066Jane\u2069", "Jane"), ("x" * 300, "x" * 255),
])
def test_names_are_cleaned_never_refused(raw, clean):
    assert normalise_name(raw) == clean


@pytest.mark.parametrize("anonymised", [False, True])
def test_variants_through_the_endpoint_count_once_and_store_clean(client, make_client, anonymised):
    acme, key = make_client(name="Acme", anonymised=anonymised)
    variants = [("s-1", "Doe, Jane"), ("s-1\t", "Doe,\tJane"), ("\ns-1\n", "Doe, Jane\n"),
                ("s\u200b-1", "Do\u200be, Jane"), ("\u202es-1", "Doe, \u202eJane"), ("s-1\ufeff", "Doe,\x07 Jane")]
    for student_id, name in variants:
        response = client.post(URL, json=beacon_body(key, student_id=student_id, student_name=name))
        assert response.status_code == 204, (student_id, response.get_data(as_text=True))
    db.session.rollback()
    learners = db.session.scalars(select(Learner).where(Learner.client_id == acme.id)).all()
    assert len(learners) == 1
    assert db.session.scalar(select(func.count()).select_from(DailyUsage)) == 1
    if not anonymised:
        assert learners[0].identity == "s-1" and learners[0].name == "Doe, Jane"


def test_inner_controls_in_an_id_are_still_refused(client, make_client):
    _acme, key = make_client()
    response = client.post(URL, json=beacon_body(key, student_id="s-\t1"))
    assert response.status_code == 400
    assert "control characters" in str(response.get_json()["fields"])


def test_erasure_finds_learners_stored_before_invisible_characters_were_dropped(app, make_client):
    acme, _key = make_client(name="Acme")
    # Rows as the earlier rule stored them: the zero-width space and bidi override kept.
    db.session.add_all([Learner(client_id=acme.id, identity="s\u200b-1", name="Jane"),
                        Learner(client_id=acme.id, identity="\u202es-1", name="Jane"),
                        Learner(client_id=acme.id, identity="s-2", name="Other")])
    db.session.commit()
    erased = erase_learner(db.session, app.extensions["pseudonymiser"], acme, " s-1\t", actor="test")
    assert erased == 2
    assert db.session.scalars(select(Learner.identity)).all() == ["s-2"]


# --- properties ---------------------------------------------------------------

invisible = st.sampled_from(INVISIBLE)
padding = st.text(alphabet=" \t\n\r\u00a0\u3000", max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_cleaning_is_idempotent(raw):
    name = normalise_name(raw)
    assert normalise_name(name) == name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name)
    try:
        student_id = normalise_student_id(raw)
    except InvalidIdentity:
        return
    assert normalise_student_id(student_id) == student_id
    assert not any(unicodedata.category(ch) == "Cf" for ch in student_id)


@settings(max_examples=200, deadline=None)
@given(base=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")),
                    min_size=1, max_size=20),
       inserts=st.lists(st.tuples(st.integers(min_value=0, max_value=20), invisible), max_size=5),
       left=padding, right=padding)
def test_ids_differing_only_by_invisible_characters_are_one_learner(base, inserts, left, right):
    variant = base
    for position, ch in inserts:
        variant = variant[:position] + ch + variant[position:]
    try:
        expected = normalise_student_id(base)
    except InvalidIdentity:
        return  # e.g. longer than allowed: then the variant is refused alike
    assert normalise_student_id(left + variant + right) == expected
