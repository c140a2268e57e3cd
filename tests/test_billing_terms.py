"""Billing users read each client's licence terms (read-only): term dates, seat window, limit, seats
used and enforcement; editing stays with admins and CSMs; no role is shown a link it gets 403 on."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import pytest
import time_machine
from billing_helpers import page_tree
from conftest import beacon_body, csrf_token_from

from app.billing import figures as billing
from app.extensions import db
from app.licensing import terms as licence_terms

TODAY = dt.datetime(2026, 6, 15, 9, tzinfo=dt.UTC)
D = dt.date


@pytest.fixture
def on_the_day():
    with time_machine.travel(TODAY, tick=False):
        yield


@pytest.fixture
def acme(on_the_day, client, make_client):
    """Acme: 3 learners in June, a term in force counted per month with a limit of 4, blocking at it."""
    acme, key = make_client(name="Acme")
    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2025, 1, 1), ends_on=D(2025, 12, 31), seat_limit=9)
    licence_terms.add_term(db.session, acme, actor="t", starts_on=D(2026, 1, 1), ends_on=D(2026, 12, 31), seat_limit=4,
                      seat_window="month", at_limit="block")
    for student in ("a", "b", "c"):
        assert client.post("/api/v1/beacons", json=beacon_body(key, student_id=student)).status_code == 204
    return acme


def _text(tree, element_id: str) -> str:
    return " ".join(tree.get_element_by_id(element_id).text_content().split())


def test_billing_user_reads_the_terms_with_their_figures(client, acme, make_staff, login):
    login(make_staff("billing"))
    response = client.get(f"/billing/{acme.slug}/licence")
    assert response.status_code == 200
    tree = page_tree(response)
    in_force = _text(tree, "term-in-force")
    assert "Term in force: 2026-01-01 – 2026-12-31" in in_force
    assert "3 / 4" in _text(tree, "stat-term-seats")
    assert "seat window 2026-06-01 – 2026-06-30" in _text(tree, "stat-term-seats")
    assert "75.0 %" in _text(tree, "stat-term-seats")
    assert "block new learners" in _text(tree, "stat-enforcement")
    # The forecast says how sure it is on the card, in the overview's words, not as a bare number.
    [row] = [r for r in billing.overview(db.session, TODAY.date()) if r.slug == acme.slug]
    assert row.sureness and _text(tree, "stat-term-forecast").endswith(f"90 % range: {row.sureness}")
    assert f"{row.outlook.expected} ({row.outlook.low}–{row.outlook.high})" in _text(tree, "stat-term-forecast")
    rows = [[" ".join(td.text_content().split()) for td in r.xpath("td")]
            for r in tree.xpath('//table[@id="terms"]/tbody/tr')]
    assert rows == [["2025-01-01", "2025-12-31", "9", "term", "record and flag", "record and flag"],
                    ["2026-01-01", "2026-12-31 in force", "4", "month", "block new learners (remote packages)",
                     "record and flag"]]
    assert "Read-only" in response.get_data(as_text=True)
    assert not tree.xpath("//form[@method='post' and not(contains(@action, 'logout'))]"), "nothing to submit"
    assert not tree.xpath('//a[starts-with(@href, "/admin")]')


def test_billing_user_cannot_post_edits(client, acme, make_staff, login):
    login(make_staff("billing"))
    token = csrf_token_from(client.get(f"/billing/{acme.slug}").get_data(as_text=True))
    [term] = [t for t in licence_terms.terms(db.session, acme.id) if t.starts_on.year == 2026]
    edits = {
        f"/admin/clients/{acme.slug}/licence": {"term-starts_on": "2027-01-01", "term-ends_on": "2027-12-31"},
        f"/admin/clients/{acme.slug}/licence/terms/{term.id}": {"term-starts_on": "2026-01-01",
                                                                "term-ends_on": "2026-12-31",
                                                                "term-seat_limit": "400"},
        f"/admin/clients/{acme.slug}/licence/terms/{term.id}/remove": {},
        f"/admin/clients/{acme.slug}/edit": {"name": "Acme", "term-seat_limit": "400"},
    }
    for url, data in edits.items():
        assert client.post(url, data={"csrf_token": token, **data}).status_code == 403, url
    assert client.post(f"/billing/{acme.slug}/licence", data={"csrf_token": token}).status_code == 405
    db.session.rollback()
    assert [(t.starts_on, t.seat_limit) for t in licence_terms.terms(db.session, acme.id)] == [
        (D(2025, 1, 1), 9), (D(2026, 1, 1), 4)]


def test_client_users_have_no_terms_page(client, acme, make_staff, login):
    login(make_staff("client", client=acme))
    assert client.get(f"/billing/{acme.slug}/licence").status_code == 404
    assert "/licence" not in client.get(f"/billing/{acme.slug}").get_data(as_text=True)


def _links(client, url: str) -> set[str]:
    tree = page_tree(client.get(url))
    found = set()
    for href in tree.xpath("//a/@href"):
        parts = urlsplit(href)
        if not parts.netloc and parts.path.startswith("/"):
            found.add(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


@pytest.mark.parametrize("role", ["billing", "csm", "admin"])
def test_no_role_is_shown_a_link_it_gets_403_on(client, acme, make_staff, login, role):
    login(make_staff(role))
    pages = ["/billing/", f"/billing/{acme.slug}", f"/billing/{acme.slug}/licence", f"/billing/{acme.slug}/learners"]
    links = set().union(*(_links(client, page) for page in pages))
    assert f"/billing/{acme.slug}/licence" in links, "every staff role is offered the terms"
    assert ("/admin/clients/" + acme.slug + "/licence" in links) == (role != "billing")
    refused = {link for link in links if client.get(link).status_code == 403}
    assert refused == set(), f"{role} is shown links it may not open: {refused}"
