"""Billing pages and CSVs: who may see what, escaping, spreadsheet safety, anonymised clients, search and sort."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from billing_helpers import Sent, Truth, page_tree, post_all, read_csv
from sqlalchemy import select

from app.billing.exports import csv_text, spreadsheet_safe
from app.extensions import db
from app.models import Learner

WHEN = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)
RANGE = "from=2026-11-01&to=2026-11-30"


def one_launch(http, key, student="s-1", name="Doe, Jane", course="Anti-Bribery", when=WHEN, kind="launch"):
    post_all(http, key, Truth([Sent(when, student, name, course, kind)]))


def learner_id(client_row) -> int:
    return db.session.scalar(select(Learner.id).where(Learner.client_id == client_row.id))


# --- tenant isolation -------------------------------------------------------------


def client_routes(slug: str, learner: int) -> list[str]:
    return [f"/billing/{slug}?{RANGE}", f"/billing/{slug}/usage.csv?{RANGE}", f"/billing/{slug}/learners.csv?{RANGE}",
            f"/billing/{slug}/learners?{RANGE}", f"/billing/{slug}/learners/{learner}"]


def staff_routes(slug: str) -> list[str]:
    """Per-client pages for the vendor's staff only (a client user gets 404, its own client's too)."""
    return [f"/billing/{slug}/licence"]


def test_client_users_see_only_their_own_client(client, login, make_client, make_staff):
    mine, my_key = make_client(name="Mine")
    theirs, their_key = make_client(name="Theirs")
    one_launch(client, my_key, student="me-1")
    one_launch(client, their_key, student="them-1", name="Secret Person")
    my_learner, their_learner = learner_id(mine), learner_id(theirs)
    login(make_staff("client", client=mine))

    for url in client_routes(mine.slug, my_learner):
        assert client.get(url).status_code == 200, url
    for url in client_routes(theirs.slug, their_learner) + client_routes("no-such-client", 1):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"Secret Person" not in response.data and b"them-1" not in response.data
    # Their learner under my slug is not mine either.
    assert client.get(f"/billing/{mine.slug}/learners/{their_learner}").status_code == 404
    # The vendor overview and the licence terms are staff only; the Billing nav entry takes a client user home.
    assert client.get("/billing/overview.csv").status_code == 404
    for url in staff_routes(mine.slug) + staff_routes(theirs.slug):
        response = client.get(url)
        assert response.status_code == 404 and b"Secret Person" not in response.data, url
    overview = client.get("/billing/")
    assert overview.status_code == 302 and overview.headers["Location"].endswith(f"/billing/{mine.slug}")


@pytest.mark.parametrize("role", ["admin", "csm", "billing"])
def test_staff_see_every_client(client, login, make_client, make_staff, role):
    first, key = make_client(name="First")
    second, _ = make_client(name="Second")
    one_launch(client, key)
    login(make_staff(role))
    for row in (first, second):
        for url in client_routes(row.slug, learner_id(first)):
            expected = 404 if (row is second and "/learners/" in url) else 200
            assert client.get(url).status_code == expected, url
        for url in staff_routes(row.slug):
            assert client.get(url).status_code == 200, url
    assert client.get("/billing/").status_code == 200
    assert client.get("/billing/overview.csv").status_code == 200


def test_signed_out_is_sent_to_login(client, make_client):
    acme, _ = make_client(name="Acme")
    for url in client_routes(acme.slug, 1) + staff_routes(acme.slug) + ["/billing/", "/billing/overview.csv"]:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_bad_dates_are_refused_with_a_message(client, login, make_client, make_staff):
    acme, _ = make_client(name="Acme")
    login(make_staff("billing"))
    for query in ("from=2026-13-01", "from=2026-11-05&to=2026-11-01", "to=yesterday"):
        response = client.get(f"/billing/{acme.slug}?{query}")
        assert response.status_code == 400, query
        assert b"YYYY-MM-DD" in response.data


# --- escaping ----------------------------------------------------------------------

XSS_NAME = '<script>alert("name")</script>'
XSS_COURSE = '<img src=x onerror=alert(1)> & "Course"'
XSS_ID = '"><svg onload=alert(2)>'


def test_stored_xss_is_escaped_on_every_page(client, login, make_client, make_staff):
    acme, key = make_client(name="<b>Acme</b>")
    one_launch(client, key, student=XSS_ID, name=XSS_NAME, course=XSS_COURSE)
    one_launch(client, key, student=XSS_ID, name=XSS_NAME, course=XSS_COURSE, kind="completed")
    login(make_staff("billing"))
    pages = [f"/billing/{acme.slug}?{RANGE}", f"/billing/{acme.slug}/learners?{RANGE}",
             f"/billing/{acme.slug}/learners?{RANGE}&q=%3Cscript",
             f"/billing/{acme.slug}/learners/{learner_id(acme)}", "/billing/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        for raw in (XSS_NAME, "<img src=x", "<svg onload", "<b>Acme</b>"):
            assert raw not in html, (url, raw)
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    learners_html = client.get(f"/billing/{acme.slug}/learners?{RANGE}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in learners_html
    course_html = client.get(f"/billing/{acme.slug}?{RANGE}").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;Course&#34;" in course_html


# --- CSVs ---------------------------------------------------------------------------


def test_spreadsheet_safe_neutralises_formula_starts():
    for raw in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(raw) == "'" + raw
    assert spreadsheet_safe("plain") == "plain"
    assert spreadsheet_safe(5) == "5"
    assert spreadsheet_safe(None) == ""
    assert spreadsheet_safe(dt.date(2026, 11, 3)) == "2026-11-03"
    text = csv_text(["a", "b"], [['x,"y"', "line\nbreak"]])
    assert text == 'a,b\r\n"x,""y""","line\nbreak"\r\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a", "b"], ['x,"y"', "line\nbreak"]]


def test_csvs_are_attachments_neutralised_and_parse_back(client, login, make_client, make_staff):
    acme, key = make_client(name="Acme")
    payloads = [("=HYPERLINK(\"http://evil\",\"x\")", "+SUM(1,2)", "Plain, \"quoted\" course"),
                ("-2+3", "@cmd", "=cmd|' /C calc'!A0"), ("normal", "Doe, \"JJ\" Jane", "Fire Safety")]
    for student, name, course in payloads:
        one_launch(client, key, student=student, name=name, course=course)
    login(make_staff("billing"))

    usage = client.get(f"/billing/{acme.slug}/usage.csv?{RANGE}")
    learners = client.get(f"/billing/{acme.slug}/learners.csv?{RANGE}")
    for response, what in ((usage, "usage"), (learners, "learners")):
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="{acme.slug}-{what}-2026-11-01-2026-11-30.csv"')
        body = response.get_data(as_text=True)
        assert "\r\n" in body and body.endswith("\r\n")
    assert usage.get_data(as_text=True).splitlines()[0] == "date,course,unique_users,launches"
    assert learners.get_data(as_text=True).splitlines()[0] == (
        "student_id,student_name,course,first_access,last_access,launches,status,completed_at,passed_at,failed_at")

    usage_rows = [r for r in read_csv(usage) if r["date"] != "total"]
    assert {r["course"] for r in usage_rows} == {"Plain, \"quoted\" course", "'=cmd|' /C calc'!A0", "Fire Safety"}
    rows = {r["student_id"]: r for r in read_csv(learners)}
    assert set(rows) == {"'=HYPERLINK(\"http://evil\",\"x\")", "'-2+3", "normal"}
    assert rows["'=HYPERLINK(\"http://evil\",\"x\")"]["student_name"] == "'+SUM(1,2)"
    assert rows["'-2+3"]["student_name"] == "'@cmd"
    assert rows["normal"]["student_name"] == "Doe, \"JJ\" Jane"
    assert rows["normal"]["first_access"] == "2026-11-03T10:00:00Z"
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


# --- anonymised clients ---------------------------------------------------------------


def test_anonymised_client_shows_pseudonyms_and_no_names(client, login, make_client, make_staff):
    anon, key = make_client(name="Anon Ltd", anonymised=True)
    one_launch(client, key, student="jane.secret@example.com", name="Jane Secretname", course="Course A")
    one_launch(client, key, student="jane.secret@example.com", name="Jane Secretname", course="Course B")
    stored = db.session.scalar(select(Learner).where(Learner.client_id == anon.id))
    assert stored.pseudonymised and stored.identity.startswith("p:")
    login(make_staff("client", client=anon))

    pages = [f"/billing/{anon.slug}?{RANGE}", f"/billing/{anon.slug}/learners?{RANGE}",
             f"/billing/{anon.slug}/learners/{stored.id}"]
    for url in pages:
        html = client.get(url).get_data(as_text=True)
        for secret in ("jane.secret", "Secretname", stored.name):
            assert secret not in html, (url, secret)
    learners_html = client.get(f"/billing/{anon.slug}/learners?{RANGE}").get_data(as_text=True)
    assert stored.identity[:12] in learners_html and stored.identity not in learners_html
    rows = read_csv(client.get(f"/billing/{anon.slug}/learners.csv?{RANGE}"))
    assert [(r["student_id"], r["student_name"], r["course"]) for r in rows] == [
        (stored.identity, "", "Course A"), (stored.identity, "", "Course B")]
    # The short reference finds the learner; the plain ID finds nothing.
    found = page_tree(client.get(f"/billing/{anon.slug}/learners?{RANGE}&q={stored.identity[2:10]}"))
    assert len(found.xpath('//table[@id="learners"]/tbody/tr')) == 1
    assert "No learner" in client.get(f"/billing/{anon.slug}/learners?{RANGE}&q=jane").get_data(as_text=True)


# --- who accessed what -------------------------------------------------------------------


def test_learner_list_search_sort_and_detail(client, login, make_client, make_staff):
    acme, key = make_client(name="Acme")
    sends = [
        Sent(dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC), "amy@example.com", "Amy Adams", "Course A", "launch"),
        Sent(dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC), "bob-7", "Bob Brown", "Course A", "launch"),
        Sent(dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC), "bob-7", "Bob Brown", "Course B", "launch"),
        Sent(dt.datetime(2026, 11, 4, 9, tzinfo=dt.UTC), "bob-7", "Bob Brown", "Course B", "completed"),
        Sent(dt.datetime(2026, 11, 5, 9, tzinfo=dt.UTC), "cy_100%", "Cy Carter", "Course C", "launch"),
        Sent(dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC), "cy_100%", "Cy Carter", "Course C", "launch"),
        Sent(dt.datetime(2026, 11, 5, 11, tzinfo=dt.UTC), "cy_100%", "Cy Carter", "Course C", "launch"),
    ]
    post_all(client, key, Truth(sends))
    login(make_staff("billing"))

    def listed(query: str) -> list[list[str]]:
        tree = page_tree(client.get(f"/billing/{acme.slug}/learners?{RANGE}&{query}"))
        return [[c.text_content().strip() for c in row.xpath("./td")]
                for row in tree.xpath('//table[@id="learners"]/tbody/tr')]

    rows = listed("sort=launches&dir=desc")
    assert [r[0] for r in rows] == ["cy_100%", "bob-7", "amy@example.com"]
    assert rows[1][1:] == ["Bob Brown", "Course A launchedCourse B completed", "2026-11-03 09:00 UTC",
                           "2026-11-04 09:00 UTC", "2"]
    assert [r[0] for r in listed("sort=name&dir=asc")] == ["amy@example.com", "bob-7", "cy_100%"]
    assert [r[0] for r in listed("sort=first_access&dir=desc")] == ["cy_100%", "bob-7", "amy@example.com"]
    assert [r[0] for r in listed("q=BROWN")] == ["bob-7"]
    assert [r[0] for r in listed("q=100%25")] == ["cy_100%"]   # % is matched literally, not as a wildcard
    assert listed("q=%25") == [["cy_100%"] + listed("q=cy")[0][1:]]
    assert listed("q=nobody") == []
    assert client.get(f"/billing/{acme.slug}/learners?sort=password").status_code == 400

    bob = db.session.scalar(select(Learner.id).where(Learner.client_id == acme.id, Learner.identity == "bob-7"))
    tree = page_tree(client.get(f"/billing/{acme.slug}/learners/{bob}"))
    events = [[c.text_content().strip() for c in row.xpath("./td")]
              for row in tree.xpath('//table[@id="learner-events"]/tbody/tr')]
    assert [e[:3] for e in events] == [["2026-11-04 09:00 UTC", "Course B", "completed"],
                                       ["2026-11-03 10:00 UTC", "Course B", "launch"],
                                       ["2026-11-03 09:00 UTC", "Course A", "launch"]]


def test_the_isolation_tests_cover_every_billing_page(app):
    """A new billing route must join `client_routes`, `staff_routes` (or the overview pair) to be tested above."""
    covered = {"/billing/<slug>", "/billing/<slug>/usage.csv", "/billing/<slug>/learners.csv",
               "/billing/<slug>/learners", "/billing/<slug>/learners/<int:learner_id>", "/billing/",
               "/billing/overview.csv", "/billing/<slug>/licence"}
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("billing_pages.")}
    assert rules == covered


def test_chart_draws_each_days_figures(client, login, make_client, make_staff):
    acme, key = make_client(name="Acme")
    one_launch(client, key, student="s-1")
    one_launch(client, key, student="s-1")
    one_launch(client, key, student="s-2", when=WHEN + dt.timedelta(days=1))
    login(make_staff("billing"))
    html = client.get(f"/billing/{acme.slug}?{RANGE}").get_data(as_text=True)
    assert '<svg class="chart"' in html
    assert "<title>2026-11-03: 1 unique users, 2 launches</title>" in html
    assert "<title>2026-11-04: 1 unique users, 1 launches</title>" in html
    assert "<title>2026-11-05: 0 unique users, 0 launches</title>" in html


def test_a_client_on_licence_terms_gets_its_term_as_the_licence_period(client, login, make_client, make_staff):
    from app.licensing import terms as licence_terms

    acme, _key = make_client(name="Acme")
    today = dt.datetime.now(dt.UTC).date()
    starts = today - dt.timedelta(days=40)
    licence_terms.add_term(db.session, acme, actor="test", starts_on=starts, ends_on=starts + dt.timedelta(days=364),
                           seat_limit=50)
    login(make_staff("admin"))
    html = client.get(f"/billing/{acme.slug}").get_data(as_text=True)
    assert f"{starts.isoformat()} to {today.isoformat()}" in html and "current licence period to date" in html
    assert "This licence period to date" in html
    # The term's seat limit, on every face (the client itself has none).
    assert "0 / 50" in html and "No seat limit set" not in html
    assert "0 / 50" in client.get("/admin/").get_data(as_text=True)
    assert "0<span class=\"of\"> / 50</span>" in client.get(f"/admin/clients/{acme.slug}").get_data(as_text=True)


def test_one_preset_is_marked_when_the_term_began_on_the_first_of_the_month(client, login, make_client, make_staff):
    from app.licensing import terms as licence_terms

    acme, _key = make_client(name="Acme")
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    licence_terms.add_term(db.session, acme, actor="test", starts_on=first, ends_on=first + dt.timedelta(days=364),
                           seat_limit=50)
    login(make_staff("admin"))
    html = client.get(f"/billing/{acme.slug}").get_data(as_text=True)
    # "This month" and "This licence period to date" span the same days: only the licence's is marked.
    assert html.count('aria-current="true"') == 1
    marked = html.split('aria-current="true"', 1)[1].split("</a>", 1)[0]
    assert marked == ">This licence period to date"


def test_the_chart_fits_a_day_with_more_users_than_launches():
    """A completion reported the day after its launch makes a day of users without launches."""
    from app.billing.chart import HEIGHT, TOP, usage_chart
    from app.billing.figures import DayTotal
    from app.licensing.periods import Period

    day = dt.date(2026, 3, 2)
    chart = usage_chart([DayTotal(day, 3, 2)], [Period(day, day)], "day", today=day)
    [bar] = chart.bars
    assert bar["y"] >= TOP and bar["height"] <= HEIGHT, "the users bar stays inside the plot"
    assert max(value for value, _y in chart.gridlines) >= 3
