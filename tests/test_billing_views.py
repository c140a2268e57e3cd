"""Issue 16's billing views on a known set of beacons, with exact figures: per-learner completion
(learners page and learners.csv), in both modes and with merged identities counted as one person.
"""

from __future__ import annotations

import datetime as dt

import pytest
from billing_helpers import Sent, Truth, page_tree, post_all, read_csv
from sqlalchemy import select

from app.extensions import db
from app.models import Learner

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
