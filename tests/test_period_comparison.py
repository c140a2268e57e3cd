"""Issue 16's period comparison: a range's figures against the previous range of the same length,
on the client billing page (with the change, absolute and in %) and in the usage API (``previous``).

The previous ranges are written out here by hand (1-31 Oct against 31 Aug-30 Sep), and every figure
is counted from what was sent (``billing_helpers.Truth``), never from the server's own functions.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from billing_helpers import Sent, Truth, page_tree, post_all, stat, workload

from app.extensions import db
from app.staff import services as staff_service

COURSES = ["Anti-Bribery", "Fire Safety"]
D = dt.date
# Usage on both sides of the August/September and September/October boundaries, and into November.
DAYS = [D(2026, 8, 31), D(2026, 9, 1), D(2026, 9, 2), D(2026, 9, 15), D(2026, 9, 25), D(2026, 9, 29),
        D(2026, 9, 30), D(2026, 10, 1), D(2026, 10, 2), D(2026, 10, 5), D(2026, 10, 6), D(2026, 10, 20),
        D(2026, 10, 31), D(2026, 11, 1)]

# (range asked for) -> the previous range of the same length, ending the day before it begins.
RANGES = {
    (D(2026, 10, 1), D(2026, 10, 31)): (D(2026, 8, 31), D(2026, 9, 30)),   # a month: 31 days back
    (D(2026, 9, 29), D(2026, 10, 2)): (D(2026, 9, 25), D(2026, 9, 28)),    # a range across a month's end
    (D(2026, 10, 1), D(2026, 10, 6)): (D(2026, 9, 25), D(2026, 9, 30)),    # this month so far, on the 6th
    (D(2026, 11, 1), D(2026, 11, 30)): (D(2026, 10, 2), D(2026, 10, 31)),  # a 30-day month: 30 days back
}
FIGURES = (("unique-users", "unique_users"), ("launches", "launches"), ("completers", "completers"))


def shown_change(now: int, before: int) -> str:
    """What the page must say: the difference, then the percentage of the previous figure, or "new"."""
    if now == before:
        return "no change"
    sign = "+" if now > before else "\u2212"
    share = "new" if before == 0 else f"{sign}{abs(now - before) * 100 / before:.1f} %"
    return f"{sign}{abs(now - before)} ({share})"


def truth_figures(truth: Truth, start: dt.date, end: dt.date) -> dict[str, int]:
    return {"unique_users": truth.unique_users(start, end), "launches": truth.launches(start, end),
            "completers": truth.completers(start, end)}


def page_comparison(tree) -> dict[str, tuple[int, str]]:
    """Per figure: (the previous range's figure, the change shown)."""
    found = {}
    for name, figure in FIGURES:
        box = tree.get_element_by_id(f"compare-{name}")
        found[figure] = (int(box.find_class("figure")[0].text_content()),
                         " ".join(box.find_class("change")[0].text_content().split()))
    return found


def api_usage(http, token: str, slug: str, start, end, course: str | None = None):
    query = f"from={start}&to={end}" + (f"&course={course}" if course else "")
    return http.get(f"/api/v1/clients/{slug}/usage?{query}", headers={"Authorization": f"Bearer {token}"})


def assert_compared(http, token: str, slug: str, truth: Truth, start, end, before, course: str | None = None):
    """The page and the API give the range's figures and the previous range's, as counted from ``truth``."""
    now, then = truth_figures(truth, start, end), truth_figures(truth, *before)
    query = f"from={start}&to={end}" + (f"&course={course}" if course else "")
    tree = page_tree(http.get(f"/billing/{slug}?{query}"))
    assert {figure: int(stat(tree, f"stat-{name}")) for name, figure in FIGURES} == now
    assert page_comparison(tree) == {figure: (then[figure], shown_change(now[figure], then[figure]))
                                     for figure in then}
    said = " ".join(tree.get_element_by_id("comparison-range").text_content().split())
    days = (before[1] - before[0]).days + 1
    assert f"previous {days} days, {before[0]} to {before[1]}" in said
    api = api_usage(http, token, slug, start, end, course)
    assert api.status_code == 200, api.get_data(as_text=True)
    body = api.get_json()
    assert {figure: body[figure] for figure in now} == now
    assert body["previous"] == {"from": before[0].isoformat(), "to": before[1].isoformat(), **then}
    return tree, body


@pytest.fixture
def staff_token(make_staff):
    def make(role="billing", client=None):
        user = make_staff(role, client=client)
        return user, staff_service.create_token(db.session, user, actor="test")
    return make


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_previous_range_on_the_page_and_in_the_api_match_ground_truth(client, login, make_client, staff_token,
                                                                      anonymised):
    acme, key = make_client(name="Acme", anonymised=anonymised)
    other, other_key = make_client(name="Other")
    truth = workload(DAYS, COURSES, students=10, per_day=7, seed=16)
    post_all(client, key, truth)
    # Another client's learners, same IDs and titles: nothing of it may count in either range.
    post_all(client, other_key, workload(DAYS, COURSES, students=10, per_day=5, seed=17))
    user, token = staff_token()
    login(user)

    for (start, end), before in RANGES.items():
        assert_compared(client, token, acme.slug, truth, start, end, before)
    # A workload where every figure is the same in both ranges would prove nothing.
    october, september = truth_figures(truth, D(2026, 10, 1), D(2026, 10, 31)), truth_figures(truth, *RANGES[
        (D(2026, 10, 1), D(2026, 10, 31))])
    assert september["unique_users"] > 0 and october != september
    # Distinct over the previous range, not a sum of its days.
    assert truth.unique_users(D(2026, 8, 31), D(2026, 9, 30)) < truth.daily_unique_sum(D(2026, 8, 31),
                                                                                         D(2026, 9, 30))

    # The course filter holds for the previous range too.
    course = COURSES[1]
    only_course = Truth([s for s in truth.sent if s.course == course])
    assert_compared(client, token, acme.slug, only_course, D(2026, 10, 1), D(2026, 10, 31),
                    (D(2026, 8, 31), D(2026, 9, 30)), course=course.replace(" ", "+"))
    assert only_course.unique_users(D(2026, 8, 31), D(2026, 9, 30)) < truth.unique_users(D(2026, 8, 31),
                                                                                          D(2026, 9, 30))

    # The page's default range, this month so far (day 6), is compared with the 6 days before it.
    with time_machine.travel(dt.datetime(2026, 10, 6, 15, tzinfo=dt.UTC), tick=False):
        login(user)
        tree = page_tree(client.get(f"/billing/{acme.slug}"))
    now, then = truth_figures(truth, D(2026, 10, 1), D(2026, 10, 6)), truth_figures(truth, D(2026, 9, 25),
                                                                                    D(2026, 9, 30))
    assert "2026-10-01 to 2026-10-06" in tree.find_class("lead")[0].text_content()
    assert page_comparison(tree) == {f: (then[f], shown_change(now[f], then[f])) for f in then}
    assert "previous 6 days, 2026-09-25 to 2026-09-30" in " ".join(
        tree.get_element_by_id("comparison-range").text_content().split())


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)


CHANGE_BEACONS = [
    # October (the 30 days before November: 2-31 October): a, b; 3 launches; a completed.
    Sent(at(10, 2), "a", "A", "Course 1", "launch"),
    Sent(at(10, 20), "a", "A", "Course 1", "launch"),
    Sent(at(10, 20, 10), "a", "A", "Course 1", "completed"),
    Sent(at(10, 31, 23), "b", "B", "Course 1", "launch"),
    # November: a, c, d; 4 launches; nobody completed.
    Sent(at(11, 1, 0), "a", "A", "Course 1", "launch"),
    Sent(at(11, 3), "c", "C", "Course 2", "launch"),
    Sent(at(11, 3, 10), "c", "C", "Course 2", "launch"),
    Sent(at(11, 30, 23), "d", "D", "Course 1", "launch"),
]
# November against 2-31 October, as the page must say it.
NOVEMBER_CHANGES = {"unique_users": (2, "+1 (+50.0 %)"), "launches": (3, "+1 (+33.3 %)"),
                    "completers": (1, "\u22121 (\u2212100.0 %)")}


def test_the_change_shown_including_new_and_none(client, login, make_client, staff_token):
    acme, key = make_client(name="Changes")
    post_all(client, key, Truth(list(CHANGE_BEACONS)))
    user, token = staff_token()
    login(user)

    def shown(start, end):
        return page_comparison(page_tree(client.get(f"/billing/{acme.slug}?from={start}&to={end}")))

    # Up, down to nothing, and from a previous range that had some.
    assert shown("2026-11-01", "2026-11-30") == NOVEMBER_CHANGES
    # From nothing before (2 September - 1 October): "new", never a division by zero.
    assert shown("2026-10-02", "2026-10-31") == {
        "unique_users": (0, "+2 (new)"), "launches": (0, "+3 (new)"), "completers": (0, "+1 (new)")}
    # Nothing now, and nothing in either range.
    assert shown("2026-12-01", "2026-12-30") == {
        "unique_users": (3, "\u22123 (\u2212100.0 %)"), "launches": (4, "\u22124 (\u2212100.0 %)"),
        "completers": (0, "no change")}
    # Single days: 31 October (b) against 30 October (nobody); 1 November (a) against 31 October (b).
    assert shown("2026-10-31", "2026-10-31")["unique_users"] == (0, "+1 (new)")
    assert shown("2026-11-01", "2026-11-01")["unique_users"] == (1, "no change")

    # The API gives the previous range's figures; the change is the reader's to work out.
    body = api_usage(client, token, acme.slug, "2026-10-02", "2026-10-31").get_json()
    assert body["previous"] == {"from": "2026-09-02", "to": "2026-10-01", "unique_users": 0, "launches": 0,
                                "completers": 0}


def test_a_client_user_sees_only_its_own_comparison(client, login, make_client, staff_token):
    mine, my_key = make_client(name="Mine")
    theirs, their_key = make_client(name="Theirs")
    post_all(client, my_key, Truth([Sent(dt.datetime(2026, 10, 5, 9, tzinfo=dt.UTC), "me-1", "Me", "C", "launch")]))
    post_all(client, their_key, Truth([
        Sent(dt.datetime(2026, 10, 5, 9, tzinfo=dt.UTC), "them-1", "Secret Person", "Secret Course", "launch"),
        Sent(dt.datetime(2026, 9, 5, 9, tzinfo=dt.UTC), "them-2", "Other Secret", "Secret Course", "launch")]))
    user, token = staff_token("client", client=mine)
    login(user)
    query = "from=2026-10-01&to=2026-10-31"

    own = page_tree(client.get(f"/billing/{mine.slug}?{query}"))
    assert page_comparison(own)["unique_users"] == (0, "+1 (new)")
    assert api_usage(client, token, mine.slug, "2026-10-01", "2026-10-31").get_json()["previous"]["from"] == "2026-08-31"
    for slug in (theirs.slug, "no-such-client"):
        page = client.get(f"/billing/{slug}?{query}")
        assert page.status_code == 404
        assert b"compare-" not in page.data and b"Secret" not in page.data and b"them-" not in page.data
        api = api_usage(client, token, slug, "2026-10-01", "2026-10-31")
        assert api.status_code == 404 and b"previous" not in api.data
    # Vendor staff see theirs, comparison included (their pages: the tests above).
    _, staff = staff_token("admin")
    assert api_usage(client, staff, theirs.slug, "2026-10-01", "2026-10-31").get_json()["previous"] == {
        "from": "2026-08-31", "to": "2026-09-30", "unique_users": 1, "launches": 1, "completers": 0}


def test_a_range_whose_previous_range_would_begin_before_the_calendar(client, login, make_client, staff_token):
    acme, _ = make_client(name="Year One")
    user, token = staff_token()
    login(user)
    # 1-31 January of the year 1 has no 31 days before it: no comparison, never a 500.
    page = client.get(f"/billing/{acme.slug}?from=0001-01-01&to=0001-01-31")
    assert page.status_code == 200
    tree = page_tree(page)
    assert tree.get_element_by_id("comparison-range", None) is None and not tree.find_class("compare")
    body = api_usage(client, token, acme.slug, "0001-01-01", "0001-01-31").get_json()
    assert body["previous"] is None and body["unique_users"] == 0
    # From the 32nd day there is one.
    assert api_usage(client, token, acme.slug, "0001-02-01", "0001-03-03").get_json()["previous"]["from"] == \
        "0001-01-01"
