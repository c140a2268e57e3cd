"""The invoice export: overview.csv and GET /api/v1/clients against a generated workload and licence terms,
every figure equal to the licence page's and the billing page's; bearer tokens and their scope; bad queries.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from billing_helpers import post_all, read_csv, workload

from app.extensions import db
from app.licensing import terms as licence_terms
from app.staff import services as staff_service

TODAY = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC)
OCTOBER = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))
NOVEMBER = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {staff_service.create_token(db.session, user, actor='test')}"}


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


@pytest.fixture
def world(client, make_client):
    """Monthly (verbatim, over its limit), whole-term (anonymised, within it) and a client without a term."""
    monthly, monthly_key = make_client(name="Monthly Verbatim")
    licence_terms.add_term(db.session, monthly, actor="test", starts_on=dt.date(2026, 10, 1),
                           ends_on=dt.date(2027, 9, 30), seat_limit=6, seat_window="month")
    whole, whole_key = make_client(name="Whole Anonymised", anonymised=True)
    licence_terms.add_term(db.session, whole, actor="test", starts_on=dt.date(2026, 9, 15),
                           ends_on=dt.date(2027, 9, 14), seat_limit=40, seat_window="term")
    loose, loose_key = make_client(name="No Term")
    truths = {
        monthly.slug: workload(days(dt.date(2026, 10, 20), TODAY), ["Fire Safety", "GDPR"], students=12,
                               per_day=3, seed=11, prefix="m"),
        whole.slug: workload(days(dt.date(2026, 10, 25), TODAY), ["Anti-Bribery"], students=9, per_day=2,
                             seed=12, prefix="w"),
        loose.slug: workload(days(dt.date(2026, 11, 10), dt.date(2026, 11, 12)), ["GDPR"], students=3,
                             per_day=2, seed=13, prefix="l"),
    }
    for key, slug in ((monthly_key, monthly.slug), (whole_key, whole.slug), (loose_key, loose.slug)):
        post_all(client, key, truths[slug])
    return {"monthly": monthly, "whole": whole, "loose": loose, "truths": truths}


def licence_page_figures(client, slug: str) -> tuple[int, int, int, int, str]:
    """(seats used, expected, low, high, statement) as the admin's licence page shows them."""
    import lxml.html

    tree = lxml.html.fromstring(client.get(f"/admin/clients/{slug}/licence").get_data(as_text=True))
    seats_value, forecast_value = (s.find_class("value")[0] for s in tree.find_class("stat")[:2])
    seats = int(seats_value.text_content().split("/")[0])
    label = tree.find_class("stat")[1].find_class("label")[0].text_content()
    low, high = label.split("90 %: ")[1].rstrip(")").split("–")
    statement = tree.xpath('//div[@class="stats"]/following-sibling::p[1]')[0].text_content().strip()
    return seats, int(forecast_value.text_content()), int(low), int(high), statement


def billing_page_users(client, slug: str, start: dt.date, end: dt.date) -> int:
    from billing_helpers import page_tree, stat

    return int(stat(page_tree(client.get(f"/billing/{slug}?from={start}&to={end}")), "stat-unique-users"))


def test_export_and_api_equal_the_pages_for_every_client(app, client, login, make_staff, world):
    truths = world["truths"]
    admin = make_staff("admin")
    script = app.test_client()  # a script: no cookie, no sign-in, only the token
    with time_machine.travel(NOW, tick=False):
        login(admin)
        token = bearer(make_staff("billing"))
        # No browser: the CSV with the token alone, the same bytes as a signed-in download.
        signed_in = client.get("/billing/overview.csv")
        with_token = script.get("/billing/overview.csv", headers=token)
        listed = script.get("/api/v1/clients", headers=token)
        pages = {slug: licence_page_figures(client, slug) for slug in (world["monthly"].slug, world["whole"].slug)}
        shown = {slug: billing_page_users(client, slug, *window) for slug, window in (
            (world["monthly"].slug, NOVEMBER), (world["whole"].slug, (dt.date(2026, 9, 15), TODAY)),
            (world["loose"].slug, NOVEMBER))}
    assert with_token.status_code == 200 and with_token.mimetype == "text/csv"
    assert with_token.get_data() == signed_in.get_data()
    rows = {row["client"]: row for row in read_csv(with_token)}
    assert listed.status_code == 200 and listed.json["on"] == TODAY.isoformat()
    api = {row["slug"]: row for row in listed.json["clients"]}
    assert set(rows) == set(api) == set(truths)

    # Monthly seats, limit 6: November's window, over the limit; billable = the seats used.
    monthly = world["monthly"].slug
    used = truths[monthly].unique_users(*NOVEMBER)
    assert used > 6, "the workload must cross the limit for this test to mean anything"
    row, item = rows[monthly], api[monthly]
    assert (row["term_start"], row["term_end"], row["seat_window"]) == ("2026-10-01", "2027-09-30", "month")
    assert (row["period_start"], row["period_end"]) == ("2026-11-01", "2026-11-30")
    assert (row["seat_limit"], row["seats_used"], row["overage"], row["billable_seats"]) == (
        "6", str(used), str(used - 6), str(used))
    assert row["unique_users"] == str(used) and row["launches"] == str(truths[monthly].launches(*NOVEMBER))
    assert row["previous_unique_users"] == str(truths[monthly].unique_users(*OCTOBER))
    assert row["mode"] == "verbatim" and item["mode"] == "verbatim"
    # Anonymised, one seat window over the whole term, limit 40: billable = the limit bought.
    whole = world["whole"].slug
    whole_used = truths[whole].unique_users(dt.date(2026, 9, 15), dt.date(2027, 9, 14))
    row_w = rows[whole]
    assert (row_w["period_start"], row_w["period_end"], row_w["seat_window"]) == ("2026-09-15", "2027-09-14", "term")
    assert (row_w["seat_limit"], row_w["seats_used"], row_w["overage"], row_w["billable_seats"]) == (
        "40", str(whole_used), "0", "40")
    assert row_w["mode"] == "anonymised" and api[whole]["mode"] == "anonymised"
    # No term: this calendar month, no limit, billed per learner; no overage figure.
    loose = world["loose"].slug
    row_l = rows[loose]
    assert (row_l["term_start"], row_l["seat_window"], row_l["seat_limit"], row_l["overage"]) == ("", "", "", "")
    assert row_l["billable_seats"] == row_l["seats_used"] == str(truths[loose].unique_users(*NOVEMBER))
    assert api[loose]["term"] is None and api[loose]["overage"] is None and api[loose]["seat_limit"] is None

    for slug in truths:
        row, item = rows[slug], api[slug]
        # The same figure on every face: the CSV, the API and the billing page (distinct learners in the window).
        assert int(row["seats_used"]) == item["seats_used"] == item["unique_users"] == shown[slug], slug
        assert (item["window_start"], item["window_end"]) == (row["period_start"], row["period_end"])
        for field in ("seat_limit", "overage", "billable_seats", "launches"):
            assert row[field] == ("" if item[field] is None else str(item[field])), (slug, field)
        # Never a bare forecast: its 90 % range and how sure, as the licence page says it.
        forecast = item["forecast"]
        assert int(row["forecast_low"]) <= int(row["forecast_unique_users"]) <= int(row["forecast_high"])
        assert (row["forecast_unique_users"], row["forecast_low"], row["forecast_high"]) == (
            str(forecast["expected"]), str(forecast["low"]), str(forecast["high"]))
        assert row["forecast_sureness"] == forecast["sureness"] in ("fairly sure", "not sure yet")
        assert row["forecast_note"] == forecast["statement"] and forecast["sureness"] in forecast["statement"]
    for slug in (monthly, whole):
        seats, expected, low, high, statement = pages[slug]
        assert (seats, expected, low, high, statement) == (
            api[slug]["seats_used"], api[slug]["forecast"]["expected"], api[slug]["forecast"]["low"],
            api[slug]["forecast"]["high"], api[slug]["forecast"]["statement"]), slug
    # The anonymised client's learners appear in no export: only counts.
    assert not any(s.student in with_token.get_data(as_text=True) for s in truths[whole].sent)


def test_a_past_window_gives_its_final_figures(client, make_staff, world):
    truths, monthly = world["truths"], world["monthly"].slug
    token = bearer(make_staff("billing"))
    with time_machine.travel(NOW, tick=False):
        rows = {r["client"]: r for r in read_csv(client.get("/billing/overview.csv?on=2026-10-31", headers=token))}
        listed = client.get("/api/v1/clients?on=2026-10-31", headers=token).json
    row = rows[monthly]
    used = truths[monthly].unique_users(*OCTOBER)
    assert (row["period_start"], row["period_end"], row["seats_used"]) == ("2026-10-01", "2026-10-31", str(used))
    assert row["launches"] == str(truths[monthly].launches(*OCTOBER))
    assert row["forecast_sureness"] == "final"
    assert row["forecast_unique_users"] == row["forecast_low"] == row["forecast_high"] == str(used)
    assert listed["on"] == "2026-10-31"
    [item] = [c for c in listed["clients"] if c["slug"] == monthly]
    assert item["seats_used"] == used and item["billable_seats"] == max(used, 6)


def test_a_client_token_sees_its_own_client_only(client, make_staff, world):
    mine, other = world["monthly"], world["whole"]
    token = bearer(make_staff("client", client=mine))
    with time_machine.travel(NOW, tick=False):
        listed = client.get("/api/v1/clients", headers=token)
        export = client.get("/billing/overview.csv", headers=token)
        theirs = client.get(f"/api/v1/clients/{other.slug}/usage?from=2026-11-01&to=2026-11-30", headers=token)
    assert listed.status_code == 200
    assert [c["slug"] for c in listed.json["clients"]] == [mine.slug]
    text = listed.get_data(as_text=True)
    assert other.slug not in text and other.name not in text and world["loose"].slug not in text
    # The vendor's export is not a client's: 404, as for a signed-in client user; nothing of anyone in it.
    assert export.status_code == 404 and mine.slug not in export.get_data(as_text=True)
    assert theirs.status_code == 404 and other.slug not in theirs.get_data(as_text=True)


def test_tokens_and_roles_on_the_export(client, make_staff, world):
    with time_machine.travel(NOW, tick=False):
        for role in ("admin", "csm", "billing"):
            listed = client.get("/api/v1/clients", headers=bearer(make_staff(role)))
            assert {c["slug"] for c in listed.json["clients"]} == set(world["truths"]), role
        # A bad or revoked token is a 401 the script can read, never the login page.
        bad = client.get("/billing/overview.csv", headers={"Authorization": "Bearer tk_nope"})
        assert bad.status_code == 401 and bad.json["error"] == "unauthorized"
        assert client.get("/api/v1/clients", headers={"Authorization": "Bearer tk_nope"}).status_code == 401
        assert client.get("/api/v1/clients").status_code == 401
        # No token and no sign-in: the page's usual way to the login form.
        anonymous = client.get("/billing/overview.csv")
        assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


@pytest.mark.parametrize("query", ["on=2026-13-01", "on=yesterday", "on=2026-11-21", "on=", "when=2026-11-01",
                                   "on=2026-02-30", "on=99999-01-01", "on=0001-01-15"])
def test_bad_query_is_400_and_nothing_else(client, make_staff, world, query):
    token = bearer(make_staff("billing"))
    with time_machine.travel(NOW, tick=False):
        api = client.get(f"/api/v1/clients?{query}", headers=token)
        export = client.get(f"/billing/overview.csv?{query}", headers=token)
    assert api.status_code == 400 and api.json["error"] == "invalid_query" and api.json["fields"], query
    assert export.status_code == 400 and world["monthly"].slug not in export.get_data(as_text=True), query


def test_usage_api_gives_seat_figures_and_completers(client, make_staff, world):
    truths, monthly = world["truths"], world["monthly"].slug
    token = bearer(make_staff("billing"))
    with time_machine.travel(NOW, tick=False):
        inside = client.get(f"/api/v1/clients/{monthly}/usage?from=2026-11-05&to=2026-11-12", headers=token).json
        across = client.get(f"/api/v1/clients/{monthly}/usage?from=2026-10-25&to=2026-11-05", headers=token).json
        loose = client.get(f"/api/v1/clients/{world['loose'].slug}/usage?from=2026-11-01&to=2026-11-30",
                           headers=token).json
        ancient = client.get(f"/api/v1/clients/{monthly}/usage?from=0001-01-01&to=0001-01-31", headers=token)
    assert ancient.status_code == 200 and ancient.json["seats"] is None and ancient.json["unique_users"] == 0
    used = truths[monthly].unique_users(*NOVEMBER)
    # A range inside one seat window: that window's seats (all of it, as the licence page counts them).
    assert inside["seats"] == {"term_start": "2026-10-01", "term_end": "2027-09-30", "seat_window": "month",
                               "window_start": "2026-11-01", "window_end": "2026-11-30", "seat_limit": 6,
                               "seats_used": used, "overage": used - 6, "billable_seats": used}
    assert inside["unique_users"] == truths[monthly].unique_users(dt.date(2026, 11, 5), dt.date(2026, 11, 12))
    # Across two windows the range's users are no seat figure: none given.
    assert across["seats"] is None and loose["seats"] is None
    span = (dt.date(2026, 10, 25), dt.date(2026, 11, 5))
    assert across["completers"] == truths[monthly].completers(*span)
    expected = {course: done for course, (_, _, done) in truths[monthly].course_totals(*span).items()}
    assert {c["course"]: c["completers"] for c in across["courses"]} == expected
    assert across["completers"] > 0, "the workload must hold completions for this test to mean anything"


def test_billing_staff_are_never_linked_to_a_page_they_cannot_open(app, client, login, make_staff, world):
    import lxml.html

    with time_machine.travel(NOW, tick=False):
        login(make_staff("billing"))
        page = client.get("/billing/")
        tree = lxml.html.fromstring(page.get_data(as_text=True))
        links = {a.get("href") for a in tree.xpath("//main//a[@href]")}
        assert links and not any("/admin/" in href for href in links)
        for href in links:
            assert client.get(href).status_code == 200, href
        # The forecast shows its range and how sure it is right there.
        cell = tree.xpath(f'//tr[@data-slug="{world["monthly"].slug}"]/td[contains(@class, "forecast")]')[0]
        assert "–" in cell.text_content() and ("sure" in cell.text_content())
    # Those who can open the licence page are linked to it.
    csm = app.test_client()
    with time_machine.travel(NOW, tick=False):
        from conftest import TEST_PASSWORD, csrf_token_from

        user = make_staff("csm")
        form = csrf_token_from(csm.get("/login").get_data(as_text=True))
        csm.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": form},
                 headers={"Referer": "https://localhost/login"})
        tree = lxml.html.fromstring(csm.get("/billing/").get_data(as_text=True))
        licence_link = f"/admin/clients/{world['monthly'].slug}/licence"
        assert licence_link in {a.get("href") for a in tree.xpath("//main//a[@href]")}
        assert csm.get(licence_link).status_code == 200
