"""Issue 16's billing views on a known set of beacons, with exact figures: per-learner completion
(learners page and learners.csv), in both modes and with merged identities counted as one person.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote, quote_plus

import lxml.html
import pytest
import time_machine
from billing_helpers import Sent, Truth, page_course_totals, page_tree, post_all, read_csv, stat
from conftest import beacon_body
from sqlalchemy import select

from app.extensions import db
from app.models import Course, Learner
from app.staff import services as staff_service

RANGE = "from=2026-11-01&to=2026-11-30"


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)


# In creation order of the learners: amy, old-bob, bob, cy. old-bob is merged into bob.
COMPLETION_BEACONS = [
    Sent(at(31, 9, month=10), "amy", "Amy Adams", "Course A", "failed"),      # before the range
    Sent(at(2, 9), "amy", "Amy Adams", "Course A", "launch"),
    Sent(at(2, 9, 30), "amy", "Amy Adams", "Course A", "completed"),
    Sent(at(3, 9), "amy", "Amy Adams", "Course B", "launch"),
    Sent(at(3, 10), "amy", "Amy Adams", "Course B", "failed"),
    Sent(at(4, 10), "amy", "Amy Adams", "Course B", "passed"),               # a retake that passes
    Sent(at(5, 9), "old-bob", "Bob Brown (old ID)", "Course A", "launch"),
    Sent(at(5, 9, 20), "old-bob", "Bob Brown (old ID)", "Course A", "failed"),
    Sent(at(6, 9), "bob", "Bob Brown", "Course A", "launch"),
    Sent(at(7, 9), "cy", "Cy Carter", "Course A", "launch"),
    Sent(at(1, 9, month=12), "cy", "Cy Carter", "Course A", "completed"),     # after the range
]

# (student, course) -> first_access, last_access, launches, status, completed_at, passed_at, failed_at
EXPECTED_LEARNER_COURSES = {
    ("amy", "Course A"): ("2026-11-02T09:00:00Z", "2026-11-02T09:30:00Z", "1", "completed",
                          "2026-11-02T09:30:00Z", "", ""),
    ("amy", "Course B"): ("2026-11-03T09:00:00Z", "2026-11-04T10:00:00Z", "1", "passed",
                          "", "2026-11-04T10:00:00Z", "2026-11-03T10:00:00Z"),
    ("bob", "Course A"): ("2026-11-05T09:00:00Z", "2026-11-06T09:00:00Z", "2", "failed",
                          "", "", "2026-11-05T09:20:00Z"),
    ("cy", "Course A"): ("2026-11-07T09:00:00Z", "2026-11-07T09:00:00Z", "1", "launched", "", "", ""),
}
NAMES = {"amy": "Amy Adams", "bob": "Bob Brown", "cy": "Cy Carter"}


def stored_identities(client_row) -> dict[str, Learner]:
    """The plain student IDs of COMPLETION_BEACONS -> their stored learners (by creation order)."""
    learners = db.session.scalars(select(Learner).where(Learner.client_id == client_row.id)
                                  .order_by(Learner.id)).all()
    return dict(zip(["amy", "old-bob", "bob", "cy"], learners, strict=True))


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_learner_completion_on_the_learners_page_and_csv(client, login, make_client, make_staff, runner,
                                                         anonymised):
    acme, key = make_client(name="Acme", anonymised=anonymised)
    post_all(client, key, Truth(list(COMPLETION_BEACONS)))
    merged = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", "old-bob",
                                 "--into", "bob"])
    assert merged.exit_code == 0, merged.output
    learners = stored_identities(acme)
    login(make_staff("billing"))

    # learners.csv: one row per person and course, the merged identities' as one person's.
    response = client.get(f"/billing/{acme.slug}/learners.csv?{RANGE}")
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == ("student_id,student_name,course,first_access,last_access,launches,"
                                    "status,completed_at,passed_at,failed_at")
    rows = read_csv(response)
    by_stored = {learners[plain].identity: plain for plain in NAMES}
    got = {(by_stored[r["student_id"]], r["course"]): (r["first_access"], r["last_access"], r["launches"],
                                                       r["status"], r["completed_at"], r["passed_at"],
                                                       r["failed_at"]) for r in rows}
    assert got == EXPECTED_LEARNER_COURSES and len(rows) == len(EXPECTED_LEARNER_COURSES)
    names = {by_stored[r["student_id"]]: r["student_name"] for r in rows}
    assert names == ({plain: "" for plain in NAMES} if anonymised else NAMES)

    # The learners page: each learner's courses with the status each reported in the range.
    page = client.get(f"/billing/{acme.slug}/learners?{RANGE}&sort=first_access&dir=asc")
    tree = page_tree(page)
    shown = [[" ".join(li.text_content().split()) for li in row.xpath('.//ul[@class="course-status"]/li')]
             for row in tree.xpath('//table[@id="learners"]/tbody/tr')]
    assert shown == [["Course A completed", "Course B passed"], ["Course A failed"], ["Course A launched"]]
    references = [row.xpath("./td[1]")[0].text_content().strip()
                  for row in tree.xpath('//table[@id="learners"]/tbody/tr')]
    if anonymised:
        assert all(learners[plain].identity.startswith("p:") for plain in learners)
        html = page.get_data(as_text=True) + text
        for plain in ("amy", "bob", "Amy Adams", "Bob Brown", "Cy Carter"):
            assert plain not in html, plain
        assert references == [learners[plain].identity[:12] for plain in ("amy", "bob", "cy")]
    else:
        assert references == ["amy", "bob", "cy"]


# --- the course filter ------------------------------------------------------------------------

COURSE_BEACONS = [
    Sent(at(2, 9), "a", "Ann A", "Course A", "launch"),
    Sent(at(2, 10), "a", "Ann A", "Course B", "launch"),
    Sent(at(3, 9), "a", "Ann A", "Course A", "launch"),
    Sent(at(3, 11), "b", "Ben B", "Course A", "launch"),
    Sent(at(3, 11, 30), "b", "Ben B", "Course A", "completed"),
    Sent(at(4, 9), "c", "Cat C", "Course B", "launch"),
    Sent(at(4, 9, 40), "c", "Cat C", "Course B", "passed"),
    Sent(at(5, 9), "undefined", "", "Course B", "launch"),     # held back: a placeholder student ID
]
# course -> unique users, launches, completers, {day: (unique users, launches)}, held-back launches
COURSE_FIGURES = {
    "Course A": (2, 3, 1, {"2026-11-02": (1, 1), "2026-11-03": (2, 2)}, 0),
    "Course B": (2, 2, 1, {"2026-11-02": (1, 1), "2026-11-04": (1, 1)}, 1),
}


def test_course_filter_on_the_page_usage_csv_learners_and_api(client, login, make_client, make_staff):
    acme, key = make_client(name="Acme")
    other, other_key = make_client(name="Other")
    post_all(client, key, Truth(list(COURSE_BEACONS)))
    post_all(client, other_key, Truth([Sent(at(2, 9), "z", "Zed", "Other Course", "launch")]))
    staff = make_staff("billing")
    token = staff_service.create_token(db.session, staff, actor="test")
    login(staff)
    bearer = {"Authorization": f"Bearer {token}"}

    def api(query: str):
        return client.get(f"/api/v1/clients/{acme.slug}/usage?{RANGE}&{query}", headers=bearer)

    for title, (users, launches, done, days, held) in COURSE_FIGURES.items():
        quoted = quote(title)
        report = api(f"course={quoted}").json
        assert (report["course"], report["unique_users"], report["launches"], report["completers"]) == (
            title, users, launches, done)
        assert [(c["course"], c["unique_users"], c["launches"], c["completers"]) for c in report["courses"]] == [
            (title, users, launches, done)]
        assert {d["date"]: (d["unique_users"], d["launches"]) for d in report["courses"][0]["days"]} == days
        assert report["held_back"]["launches"] == held

        csv_response = client.get(f"/billing/{acme.slug}/usage.csv?{RANGE}&course={quoted}")
        assert csv_response.status_code == 200
        assert f"-course{_course_id(acme, title)}-" in csv_response.headers["Content-Disposition"]
        rows = [(r["date"], r["course"], int(r["unique_users"]), int(r["launches"])) for r in read_csv(csv_response)]
        assert rows == [*((day, title, *figures) for day, figures in sorted(days.items())),
                        ("total", title, users, launches), ("total", "(all courses)", users, launches),
                        *([("held_back:undefined", title, 0, held)] if held else [])]

        tree = page_tree(client.get(f"/billing/{acme.slug}?{RANGE}&course={quoted}"))
        assert (stat(tree, "stat-unique-users"), stat(tree, "stat-launches"), stat(tree, "stat-completers")) == (
            str(users), str(launches), str(done))
        assert page_course_totals(tree) == {title: (users, launches, done)}
        assert title in tree.get_element_by_id("course-shown").text_content()
        # The downloads and the learner list keep the filter.
        links = {a.text_content(): a.get("href") for a in tree.xpath('//div[@class="downloads"]/a')}
        assert all(f"course={quote_plus(title)}" in href for href in links.values()), links

        learners = read_csv(client.get(f"/billing/{acme.slug}/learners.csv?{RANGE}&course={quoted}"))
        expected = {s.student for s in COURSE_BEACONS if s.course == title and s.student != "undefined"}
        assert {r["student_id"] for r in learners} == expected and {r["course"] for r in learners} == {title}
        listed = page_tree(client.get(links["Who accessed what"]))
        assert {row.xpath("./td[1]")[0].text_content().strip()
                for row in listed.xpath('//table[@id="learners"]/tbody/tr')} == expected

    # A title is matched as ingest stores it (spaces collapsed); empty means every course.
    assert api("course=%20Course%20%20A%20").json["unique_users"] == 2
    everything = api("course=").json
    assert (everything["course"], everything["unique_users"], everything["launches"]) == (None, 3, 5)
    assert api("").json == everything

    # An unknown course (another client's included) is a 400 with the reason, never another client's figures.
    for bad in ("Other%20Course", "Nope", "%00", "x" * 400):
        response = api(f"course={bad}")
        assert response.status_code == 400, bad
        assert response.json["error"] == "invalid_query" and "course" in response.json["fields"], bad
        assert client.get(f"/billing/{acme.slug}/usage.csv?{RANGE}&course={bad}").status_code == 400, bad
        assert client.get(f"/billing/{acme.slug}/learners.csv?{RANGE}&course={bad}").status_code == 400, bad
        page = client.get(f"/billing/{acme.slug}?{RANGE}&course={bad}")
        assert page.status_code == 400, bad
        tree = lxml.html.fromstring(page.get_data(as_text=True))
        assert tree.get_element_by_id("range-error") is not None
        # An unknown title shows every course over the range asked; a malformed one also resets the range.
        assert stat(tree, "stat-unique-users") == ("3" if bad in ("Other%20Course", "Nope") else "0"), bad
        assert client.get(f"/billing/{acme.slug}/learners?{RANGE}&course={bad}").status_code == 400, bad
    assert "Zed" not in client.get(f"/billing/{acme.slug}?{RANGE}&course=Other%20Course").get_data(as_text=True)


def _course_id(client_row, title: str) -> int:
    return db.session.scalar(select(Course.id).where(Course.client_id == client_row.id, Course.title == title))


# --- usage by LMS origin and by package ----------------------------------------------------------

# when, student, course, kind, Origin header (None: not sent), package ID ("ISSUED": the package built here)
SOURCE_BEACONS = [
    (at(2, 9), "a", "Course A", "launch", "https://lms-a.example", "ISSUED"),
    (at(2, 9, 10), "a", "Course A", "completed", "https://lms-a.example", "ISSUED"),
    (at(3, 9), "b", "Course A", "launch", "https://lms-b.example:8443", "ISSUED"),
    (at(3, 10), "a", "Course B", "launch", "https://lms-b.example:8443", "built-elsewhere-1"),
    (at(4, 9), "c", "Course B", "launch", None, None),
    (at(5, 9), "c", "Course B", "launch", None, None),
    (at(6, 9), "old-a", "Course A", "launch", "https://lms-a.example", "ISSUED"),   # merged into a below
    (at(1, 9, month=12), "d", "Course A", "launch", "https://lms-d.example", "ISSUED"),   # after the range
]


def test_usage_by_lms_origin_and_package_on_the_page_and_in_the_api(client, login, make_client, make_staff,
                                                                     runner, tmp_path):
    acme, key = make_client(name="Acme")
    built = runner.invoke(args=["package", "build", "--client", acme.slug, "--course", "Course A", "--scorm", "1.2",
                                "--server-url", "https://track.example", "-o", str(tmp_path / "a.zip"), "--json"])
    assert built.exit_code == 0, built.output
    issued = json.loads(built.output)["package_id"]
    for when, student, course, kind, origin, package in SOURCE_BEACONS:
        body = beacon_body(key, student_id=student, course=course, event=kind,
                           package=issued if package == "ISSUED" else package)
        with time_machine.travel(when, tick=False):
            response = client.post("/api/v1/beacons", json={k: v for k, v in body.items() if v is not None},
                                   headers={"Origin": origin} if origin else {})
        assert response.status_code == 204, response.get_data(as_text=True)
    merged = runner.invoke(args=["learner", "merge", "--client", acme.slug, "--student-id", "old-a", "--into", "a"])
    assert merged.exit_code == 0, merged.output
    staff = make_staff("billing")
    token = staff_service.create_token(db.session, staff, actor="test")

    expected = {
        "": ([("lms-b.example:8443", 2, 2), ("lms-a.example", 1, 2), (None, 1, 2)],
             [(issued, 2, 3), ("built-elsewhere-1", 1, 1), (None, 1, 2)]),
        "Course B": ([("lms-b.example:8443", 1, 1), (None, 1, 2)], [("built-elsewhere-1", 1, 1), (None, 1, 2)]),
    }
    for course, (origins, packages) in expected.items():
        report = client.get(f"/api/v1/clients/{acme.slug}/usage?{RANGE}&course={quote(course)}",
                            headers={"Authorization": f"Bearer {token}"}).json
        assert [(o["lms_host"], o["unique_users"], o["launches"]) for o in report["origins"]] == origins
        assert [(p["package"], p["unique_users"], p["launches"]) for p in report["packages"]] == packages
        for row in report["packages"]:
            if row["package"] == issued:
                assert {k: v for k, v in row["issued"].items() if k != "issued_at"} == {
                    "course": "Course A", "scorm_version": "1.2", "mode": "deployed"}
                assert dt.datetime.fromisoformat(row["issued"]["issued_at"]).tzinfo is not None
            else:
                assert row["issued"] is None, row

    login(staff)
    tree = page_tree(client.get(f"/billing/{acme.slug}?{RANGE}"))

    def table(table_id: str) -> list[list[str]]:
        return [[" ".join(c.text_content().split()) for c in row.xpath("./td")]
                for row in tree.xpath(f'//table[@id="{table_id}"]/tbody/tr')]

    assert table("origin-usage") == [["lms-b.example:8443", "2", "2"], ["lms-a.example", "1", "2"],
                                     ["no origin sent", "1", "2"]]
    packages = table("package-usage")
    assert [row[1:] for row in packages] == [["2", "3"], ["1", "1"], ["1", "2"]]
    assert packages[0][0].startswith("Course A · SCORM 1.2 · deployed · issued ") and issued[:8] in packages[0][0]
    assert packages[1][0] == "built-elsewhere-1 (not issued here)" and packages[2][0] == "no package ID sent"


# --- both CSVs with a bearer token ---------------------------------------------------------------


def test_usage_and_learners_csv_with_a_bearer_token(client, make_client, make_staff):
    acme, key = make_client(name="Acme")
    other, other_key = make_client(name="Other")
    post_all(client, key, Truth(list(COURSE_BEACONS)))
    post_all(client, other_key, Truth([Sent(at(2, 9), "z", "Zed Secret", "Other Course", "launch")]))

    def bearer(user) -> dict:
        return {"Authorization": f"Bearer {staff_service.create_token(db.session, user, actor='test')}"}

    billing_token, own_token = bearer(make_staff("billing")), bearer(make_staff("client", client=acme))
    for headers in (billing_token, own_token):
        usage = client.get(f"/billing/{acme.slug}/usage.csv?{RANGE}&course=Course%20A", headers=headers)
        assert usage.status_code == 200 and usage.mimetype == "text/csv"
        assert read_csv(usage)[-1] == {"date": "total", "course": "(all courses)", "unique_users": "2",
                                       "launches": "3"}
        learners = client.get(f"/billing/{acme.slug}/learners.csv?{RANGE}", headers=headers)
        assert learners.status_code == 200
        assert {(r["student_id"], r["course"], r["status"]) for r in read_csv(learners)} == {
            ("a", "Course A", "launched"), ("a", "Course B", "launched"), ("b", "Course A", "completed"),
            ("c", "Course B", "passed")}
        # Bad input with a token: 400, as for a signed-in user.
        assert client.get(f"/billing/{acme.slug}/usage.csv?from=2026-13-01", headers=headers).status_code == 400
        assert client.get(f"/billing/{acme.slug}/learners.csv?course=Nope", headers=headers).status_code == 400
    # A client's token sees its own client only: another's is a 404 with nothing of it.
    for what in ("usage.csv", "learners.csv"):
        theirs = client.get(f"/billing/{other.slug}/{what}?{RANGE}", headers=own_token)
        assert theirs.status_code == 404 and b"Zed" not in theirs.data and b"Other Course" not in theirs.data
        assert client.get(f"/billing/{other.slug}/{what}?{RANGE}", headers=billing_token).status_code == 200
        # A bad token is a 401 a script can read; no token and no sign-in is the way to the login form.
        bad = client.get(f"/billing/{acme.slug}/{what}?{RANGE}", headers={"Authorization": "Bearer tk_nope"})
        assert bad.status_code == 401 and bad.json["error"] == "unauthorized"
        anonymous = client.get(f"/billing/{acme.slug}/{what}?{RANGE}")
        assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    # The pages themselves still want a signed-in browser.
    page = client.get(f"/billing/{acme.slug}?{RANGE}", headers=billing_token)
    assert page.status_code == 302 and "/login" in page.headers["Location"]
