"""The client form edits the licence term in force (dates and seat limit), audited, with the Licence
page's checks; with no term in force it can add one, and left empty it adds none."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from billing_helpers import page_tree
from sqlalchemy import select

from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.models import AuditEntry, Client

TODAY = dt.datetime(2026, 6, 15, 9, tzinfo=dt.UTC)
D = dt.date


@pytest.fixture
def on_the_day():
    """Today is TODAY from sign-in on (a session made later in real time would look stale)."""
    with time_machine.travel(TODAY, tick=False):
        yield


@pytest.fixture
def csm_signed_in(on_the_day, make_staff, login):
    user = make_staff("csm", email="casey@vendor.example")
    login(user)
    return user


def _form(client, slug: str) -> dict:
    """The form as the browser would post it: every field with its current value."""
    tree = page_tree(client.get(f"/admin/clients/{slug}/edit"))
    data = {}
    for element in tree.xpath('//form[.//input[@name="name"]]//*[@name]'):
        name, tag = element.get("name"), element.tag
        if tag == "select":
            chosen = element.xpath(".//option[@selected]") or element.xpath(".//option")
            data[name] = chosen[0].get("value") if chosen else ""
        elif tag == "textarea":
            data[name] = element.text_content()
        elif element.get("type") == "checkbox":
            if element.get("checked") is not None:
                data[name] = "y"
        else:
            data[name] = element.get("value") or ""
    return data


def _audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_the_form_shows_and_edits_the_term_in_force(app, client, make_client, csm_signed_in):
    with time_machine.travel(TODAY, tick=False):
        acme, _ = make_client(name="Acme")
        earlier = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2025, 1, 1), ends_on=D(2025, 12, 31),
                                    seat_limit=5)
        term = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                                 seat_limit=10, seat_window="month", at_limit="block")
        form = _form(client, acme.slug)
        assert (form["term-starts_on"], form["term-ends_on"], form["term-seat_limit"]) == (
            "2026-01-01", "2026-12-31", "10")
        form.update({"term-ends_on": "2027-03-31", "term-seat_limit": "25"})
        assert client.post(f"/admin/clients/{acme.slug}/edit", data=form).status_code == 302
        db.session.rollback()
        db.session.refresh(term)
        # Dates and limit changed; how seats are counted and the policy kept; the other term untouched.
        assert (term.starts_on, term.ends_on, term.seat_limit, term.seat_window, term.at_limit) == (
            D(2026, 1, 1), D(2027, 3, 31), 25, "month", "block")
        assert licence_terms.terms(db.session, acme.id)[0].id == earlier.id and earlier.seat_limit == 5
        [entry] = _audit("licence.term_update")
        assert (entry.actor, entry.before["seat_limit"], entry.after["seat_limit"]) == ("casey@vendor.example",
                                                                                        10, 25)
        assert (entry.before["ends_on"], entry.after["ends_on"]) == ("2026-12-31", "2027-03-31")

        # Saving again unchanged records nothing more.
        assert client.post(f"/admin/clients/{acme.slug}/edit", data=_form(client, acme.slug)).status_code == 302
        assert len(_audit("licence.term_update")) == 1


@pytest.mark.parametrize("change, reason", [
    ({"term-starts_on": "2025-06-01"}, "overlaps the term 2025-01-01 to 2025-12-31"),
    ({"term-ends_on": "2025-12-01"}, "end on or after the day it starts"),
    ({"term-seat_limit": "-3"}, "Number must be at least 0"),
    ({"term-ends_on": ""}, "This field is required"),
    ({"term-starts_on": "next week"}, "This field is required"),  # as on the Licence page
])
def test_a_refused_term_change_is_a_400_and_changes_nothing(app, client, make_client, csm_signed_in, change,
                                                           reason):
    with time_machine.travel(TODAY, tick=False):
        acme, _ = make_client(name="Acme")
        licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2025, 1, 1), ends_on=D(2025, 12, 31),
                          seat_limit=5)
        term = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                                 seat_limit=10)
        form = {**_form(client, acme.slug), "name": "Acme Renamed", **change}
        response = client.post(f"/admin/clients/{acme.slug}/edit", data=form)
        assert response.status_code == 400
        assert reason in response.get_data(as_text=True)
        db.session.rollback()
        db.session.refresh(term)
        assert (term.starts_on, term.ends_on, term.seat_limit) == (D(2026, 1, 1), D(2026, 12, 31), 10)
        assert db.session.get(Client, acme.id).name == "Acme", "the client's settings were not saved either"
        assert _audit("licence.term_update") == [] and _audit("client.update") == []


def test_without_a_term_in_force_the_form_adds_one_or_none(app, client, make_client, csm_signed_in):
    with time_machine.travel(TODAY, tick=False):
        acme, _ = make_client(name="Acme")
        tree = page_tree(client.get(f"/admin/clients/{acme.slug}/edit"))
        assert "No licence term is in force" in tree.get_element_by_id("licence-term").text_content()
        # Left empty: saved, no term made.
        assert client.post(f"/admin/clients/{acme.slug}/edit", data=_form(client, acme.slug)).status_code == 302
        assert licence_terms.terms(db.session, acme.id) == []
        # Filled in: a term in force from the form (seats over the term, record and flag), audited.
        form = {**_form(client, acme.slug), "term-starts_on": "2026-06-01", "term-ends_on": "2027-05-31",
                "term-seat_limit": "40"}
        assert client.post(f"/admin/clients/{acme.slug}/edit", data=form).status_code == 302
        db.session.rollback()
        [term] = licence_terms.terms(db.session, acme.id)
        assert (term.starts_on, term.ends_on, term.seat_limit, term.seat_window, term.at_limit) == (
            D(2026, 6, 1), D(2027, 5, 31), 40, "term", "record")
        assert licences.term_in_force(db.session, acme.id, TODAY.date()).id == term.id
        [entry] = _audit("licence.term_add")
        assert entry.actor == "casey@vendor.example" and entry.after["seat_limit"] == 40
        # Only a start: the end is required (nothing made).
        beta, _ = make_client(name="Beta")
        form = {**_form(client, beta.slug), "term-starts_on": "2026-06-01"}
        response = client.post(f"/admin/clients/{beta.slug}/edit", data=form)
        assert response.status_code == 400 and licence_terms.terms(db.session, beta.id) == []
