"""Terms are the one licence model (issue 16): a client's Settings has no seat limit of its own,
``licence show`` never says "None seats", the seat card compares only a seat window with its limit,
and terms can be edited and removed (CSRF, audited). ``client create --seat-limit`` alerting and
enforcing like any term, and one alert per crossing: ``test_licence_alerts.py``."""

from __future__ import annotations

import datetime as dt

import time_machine
from billing_helpers import page_tree
from conftest import beacon_body, csrf_token_from
from sqlalchemy import select
from test_licence_alerts import _client_row, _create

from app.billing import figures as billing
from app.extensions import db
from app.licensing import terms as licence_terms
from app.licensing.models import LicenceTerm
from app.models import AuditEntry

BEACONS = "/api/v1/beacons"
D = dt.date


def test_licence_show_says_no_seat_limit_never_none_seats(app, runner):
    data = _create(runner, "--name", "Delta", "--licence-start", "2026-01-01", "--licence-end", "2026-06-30")
    assert data["term"]["seat_limit"] is None and (data["term"]["starts_on"], data["term"]["ends_on"]) == (
        "2026-01-01", "2026-06-30")
    runner.invoke(args=["licence", "add-term", "--client", data["slug"], "--start", "2026-07-01",
                        "--end", "2026-12-31", "--seat-limit", "1"])
    shown = runner.invoke(args=["licence", "show", "--client", data["slug"]])
    assert shown.exit_code == 0
    assert shown.output.splitlines() == ["2026-01-01 to 2026-06-30: no seat limit",
                                         "2026-07-01 to 2026-12-31: 1 seat per term"]
    assert "None" not in shown.output
    bad = runner.invoke(args=["client", "create", "--name", "Epsilon", "--licence-start", "2026-05-01",
                              "--licence-end", "2026-04-01"])
    assert bad.exit_code != 0 and "cannot end" in bad.output and _client_row("epsilon") is None


def test_settings_show_the_term_in_force_and_offer_no_limit_of_their_own(app, client, make_client, make_staff,
                                                                          login):
    acme, _ = make_client(name="Acme", seat_limit=10)
    plain, _ = make_client(name="Plain")
    login(make_staff("csm"))
    url = f"/admin/clients/{acme.slug}/edit"
    html = client.get(url).get_data(as_text=True)
    tree = page_tree(client.get(url))
    assert not tree.xpath('//input[@name="seat_limit" or @name="licence_start" or @name="licence_end"]')
    term_box = tree.get_element_by_id("licence-term").text_content()
    assert "10 seats per term" in term_box
    assert tree.xpath(f'//*[@id="licence-term"]//a[@href="/admin/clients/{acme.slug}/licence"]')
    # A script posting the old field changes nothing: the term is the only limit.
    saved = client.post(url, data={"csrf_token": csrf_token_from(html), "name": "Acme", "active": "y",
                                   "licence": "subscription", "seat_limit": "50"})
    assert saved.status_code == 302
    today = dt.datetime.now(dt.UTC).date()
    assert billing.seat_limit(db.session, acme, today) == 10
    assert [t.seat_limit for t in licence_terms.terms(db.session, acme.id)] == [10]
    assert "No licence term is in force" in page_tree(client.get(f"/admin/clients/{plain.slug}/edit")
                                                      ).get_element_by_id("licence-term").text_content()


def _seat_card(client, slug, query=""):
    tree = page_tree(client.get(f"/billing/{slug}{query}"))
    card = tree.get_element_by_id("stat-seats")
    return " ".join(card.text_content().split()), bool(card.xpath(".//meter"))


def test_the_seat_card_compares_only_a_seat_window_with_its_limit(app, client, make_client, make_staff, login):
    acme, key = make_client(name="Acme")
    licence_terms.add_term(db.session, acme, actor="test", starts_on=D(2026, 11, 10), ends_on=D(2027, 11, 9),
                           seat_limit=10)
    for day, students in ((D(2026, 10, 20), ["a", "b", "c"]), (D(2026, 11, 12), ["c", "d", "e", "f"])):
        with time_machine.travel(dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC), tick=False):
            for student in students:
                assert client.post(BEACONS, json=beacon_body(key, student_id=student)).status_code == 204
    with time_machine.travel(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), tick=False):
        login(make_staff("billing"))
        # The term's own window to date: seats against the limit.
        text, meter = _seat_card(client, acme.slug)
        assert text.startswith("4 / 10") and "40.0 %" in text and "2026-11-10 – 2027-11-09 (to date)" in text
        assert meter
        # Last month, before the term began: learners, no limit, no percentage (it said "0 / 10 (0.0 %)").
        text, meter = _seat_card(client, acme.slug, "?from=2026-10-01&to=2026-10-31")
        assert text.startswith("3 ") and "/ 10" not in text and "%" not in text and not meter
        assert "not seats" in text and "2026-11-10 – 2027-11-09" in text
        # Last 90 days spans the term's start: no "7 / 10, 70 %" for a span that is not the window.
        text, meter = _seat_card(client, acme.slug, "?from=2026-08-23&to=2026-11-20")
        assert text.startswith("6 ") and "/ 10" not in text and "%" not in text and not meter
        # Part of the window, not from its start: not seats either.
        text, _ = _seat_card(client, acme.slug, "?from=2026-11-11&to=2026-11-20")
        assert "/ 10" not in text and "%" not in text


def test_terms_are_edited_and_removed_with_csrf_audit_and_clear_errors(app, client, make_client, make_staff, login):
    acme, _ = make_client(name="Acme")
    other, _ = make_client(name="Other")
    first = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 6, 30),
                                   seat_limit=10)
    second = licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 7, 1), ends_on=D(2026, 12, 31),
                                    seat_limit=20)
    foreign = licence_terms.add_term(db.session, other, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31),
                                     seat_limit=5)
    ids = (first.id, second.id, foreign.id)
    login(make_staff("csm", email="casey@vendor.example"))
    base = f"/admin/clients/{acme.slug}/licence"
    listing = client.get(base).get_data(as_text=True)
    assert f'href="{base}/terms/{first.id}"' in listing
    page = client.get(f"{base}/terms/{first.id}")
    assert page.status_code == 200 and 'value="2026-06-30"' in page.get_data(as_text=True)
    token = csrf_token_from(page.get_data(as_text=True))
    fields = {"term-starts_on": "2026-01-01", "term-ends_on": "2026-06-30", "term-seat_limit": "15",
              "term-seat_window": "term", "term-at_limit": "record", "term-after_expiry": "record"}

    def state():
        db.session.expire_all()
        return [(t.starts_on, t.ends_on, t.seat_limit) for t in licence_terms.terms(db.session, acme.id)]

    before = state()
    assert client.post(f"{base}/terms/{ids[0]}", data=fields).status_code == 400, "no CSRF token"
    overlap = client.post(f"{base}/terms/{ids[0]}", data={**fields, "csrf_token": token,
                                                          "term-ends_on": "2026-07-15"})
    assert overlap.status_code == 400
    assert "Nothing changed: this overlaps the term 2026-07-01 to 2026-12-31" in overlap.get_data(as_text=True)
    reversed_ = client.post(f"{base}/terms/{ids[0]}", data={**fields, "csrf_token": token,
                                                            "term-ends_on": "2025-12-31"})
    assert reversed_.status_code == 400 and "must end on or after" in reversed_.get_data(as_text=True)
    negative = client.post(f"{base}/terms/{ids[0]}", data={**fields, "csrf_token": token, "term-seat_limit": "-1"})
    assert negative.status_code == 400
    assert client.post(f"/admin/clients/{acme.slug}/licence/terms/{ids[2]}",
                       data={**fields, "csrf_token": token}).status_code == 404, "another client's term"
    assert state() == before, "no bad request changed anything"

    saved = client.post(f"{base}/terms/{ids[0]}", data={**fields, "csrf_token": token})
    assert saved.status_code == 302
    assert state() == [(D(2026, 1, 1), D(2026, 6, 30), 15), (D(2026, 7, 1), D(2026, 12, 31), 20)]
    [edit] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "licence.term_update"))
    assert edit.actor == "casey@vendor.example" and edit.client_id == acme.id
    assert (edit.before["seat_limit"], edit.after["seat_limit"]) == (10, 15)

    assert client.post(f"{base}/terms/{ids[1]}/remove", data={}).status_code == 400, "no CSRF token"
    assert client.post(f"{base}/terms/{ids[2]}/remove", data={"csrf_token": token}).status_code == 404
    assert len(state()) == 2 and db.session.get(LicenceTerm, ids[2]) is not None
    removed = client.post(f"{base}/terms/{ids[1]}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    assert state() == [(D(2026, 1, 1), D(2026, 6, 30), 15)]
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "licence.term_remove"))
    assert entry.before["starts_on"] == "2026-07-01" and entry.after is None
    assert "Licence term 2026-07-01 to 2026-12-31 removed." in client.get(base).get_data(as_text=True)
