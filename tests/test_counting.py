"""Counting against ground truth: unique users per course and UTC day, distinct over ranges.

Workloads are random (seeded) and property-based (hypothesis); both modes,
verbatim and anonymised; e-mail IDs arrive in case and white-space variants.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict

import pytest
import time_machine
from conftest import beacon_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.billing.figures import usage_report
from app.extensions import db
from app.identity.placeholders import DEFAULT_PLACEHOLDER_IDS
from app.identity.student_ids import normalise_student_id
from app.ingest.beacons import Beacon, record_beacon
from app.ingest.schemas import BeaconSchema
from app.models import Client

URL = "/api/v1/beacons"
DAY0 = dt.date(2026, 3, 1)
COURSES = ["Anti-Bribery", "Fire Safety", "GDPR Basics"]
LEARNERS = ["Jane.Doe@Example.com", "bob@example.org", "S-1001", "s-1001", "Ælfrida@Example.co.uk",
            "Ren\u00e9e", "Rene\u0301e", "K-77", "undefined", " NULL "]  # the last two: placeholders, held back
_schema = BeaconSchema()


def variant(student_id: str, rng: random.Random) -> str:
    """How an LMS may send the same ID: e-mails in any case, any ID with padding."""
    if "@" in student_id:
        student_id = rng.choice([student_id, student_id.upper(), student_id.lower(), student_id.swapcase()])
    return rng.choice(["", " ", "  ", "\u00a0"]) + student_id + rng.choice(["", " ", "\u2003"])


def _counted(beacons: list[dict], start: dt.date, end: dt.date) -> tuple[list[dict], list[dict]]:
    """(counted, held back): the deduplicated beacons of the range, placeholders apart."""
    unique: dict[str, dict] = {}
    for beacon in beacons:
        unique.setdefault(beacon["event_id"], beacon)
    in_range = [b for b in unique.values() if start <= b["day"] <= end]
    held = [b for b in in_range if normalise_student_id(b["student_id"]).casefold() in DEFAULT_PLACEHOLDER_IDS]
    return [b for b in in_range if b not in held], held


def expected_previous(beacons: list[dict], start: dt.date, end: dt.date) -> dict:
    """The totals of the range of as many days just before ``start``, counted on their own."""
    days = (end - start).days + 1
    before_end = start - dt.timedelta(days=1)
    before_start = before_end - dt.timedelta(days=days - 1)
    rows, _ = _counted(beacons, before_start, before_end)
    return {"from_": before_start, "to": before_end,
            "unique_users": len({normalise_student_id(b["student_id"]) for b in rows}),
            "launches": sum(b["event"] == "launch" for b in rows), "completers": _completers(rows)}


def expected_report(slug: str, beacons: list[dict], start: dt.date, end: dt.date) -> dict:
    """Ground truth, computed the slow obvious way from the deduplicated stream."""
    rows, held = _counted(beacons, start, end)
    users = {normalise_student_id(b["student_id"]) for b in rows}
    courses = defaultdict(list)
    for b in rows:
        courses[b["course"]].append(b)
    report_courses = []
    for title in sorted(courses):
        course_rows = courses[title]
        days = defaultdict(list)
        for b in course_rows:
            days[b["day"]].append(b)
        report_courses.append({
            "course": title,
            "unique_users": len({normalise_student_id(b["student_id"]) for b in course_rows}),
            "launches": sum(b["event"] == "launch" for b in course_rows),
            "completers": _completers(course_rows),
            "days": [{"date": day, "unique_users": len({normalise_student_id(b["student_id"]) for b in day_rows}),
                      "launches": sum(b["event"] == "launch" for b in day_rows)}
                     for day, day_rows in sorted(days.items())],
        })
    launches = sum(b["event"] == "launch" for b in rows)
    # These beacons carry no Origin and no package ID: one source each, None, with every learner.
    source = {"unique_users": len(users), "launches": launches} if rows else None
    return {"client": slug, "from_": start, "to": end, "course": None, "unique_users": len(users),
            "launches": launches, "completers": _completers(rows),
            "previous": expected_previous(beacons, start, end),
            "courses": report_courses, "seats": None,  # no licence term: no seat window to report
            "held_back": _held_back(held),
            "origins": [{"lms_host": None, **source}] if source else [],
            "packages": [{"package": None, **source, "issued": None}] if source else []}


def _completers(rows: list[dict]) -> int:
    return len({normalise_student_id(b["student_id"]) for b in rows if b["event"] in ("completed", "passed")})


def _held_back(held: list[dict]) -> dict:
    by_placeholder = defaultdict(list)
    for b in held:
        by_placeholder[normalise_student_id(b["student_id"]).casefold()].append(b)
    reasons = [{"placeholder": p, "beacons": len(bs), "launches": sum(b["event"] == "launch" for b in bs)}
               for p, bs in by_placeholder.items()]
    reasons.sort(key=lambda r: (-r["beacons"], r["placeholder"]))
    return {"beacons": len(held), "launches": sum(b["event"] == "launch" for b in held), "reasons": reasons}


def report(client_id: int, start: dt.date, end: dt.date) -> dict:
    db.session.rollback()
    return usage_report(db.session, db.session.get(Client, client_id), start, end)


def random_workload(rng: random.Random, n: int, days: int = 4) -> list[dict]:
    workload = []
    for _ in range(n):
        workload.append({
            "student_id": variant(rng.choice(LEARNERS), rng),
            "course": rng.choice(COURSES),
            "day": DAY0 + dt.timedelta(days=rng.randrange(days)),
            "event": rng.choices(["launch", "completed", "passed", "failed"], weights=[6, 2, 1, 1])[0],
            "event_id": str(uuid.uuid4()),
            "student_name": rng.choice(["Doe, Jane", "Bob", ""]),
        })
    # Some beacons are sent twice (the tracker retries): same event ID.
    workload += [dict(b) for b in rng.sample(workload, n // 5)]
    rng.shuffle(workload)
    return workload


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
def test_random_workload_through_the_endpoint_matches_ground_truth(client, make_client, anonymised):
    rng = random.Random(20261126 + anonymised)
    acme, key = make_client(anonymised=anonymised)
    workload = random_workload(rng, 90)
    for beacon in sorted(workload, key=lambda b: b["day"]):
        noon = dt.datetime.combine(beacon["day"], dt.time(rng.randrange(24), rng.randrange(60)), dt.UTC)
        with time_machine.travel(noon, tick=False):
            body = beacon_body(key, **{k: v for k, v in beacon.items() if k != "day"})
            assert client.post(URL, json=body).status_code == 204
    last = DAY0 + dt.timedelta(days=3)
    assert report(acme.id, DAY0, last) == expected_report(acme.slug, workload, DAY0, last)
    # Sub-ranges, single days and a range with nothing in it.
    for start, end in [(DAY0, DAY0), (DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2)),
                       (last, last + dt.timedelta(days=30)), (DAY0 - dt.timedelta(days=9), DAY0 - dt.timedelta(days=1))]:
        assert report(acme.id, start, end) == expected_report(acme.slug, workload, start, end)
    whole = report(acme.id, DAY0, last)
    # The workload repeats learners across days: a sum of daily figures would be wrong.
    assert whole["unique_users"] < sum(d["unique_users"] for c in whole["courses"] for d in c["days"])
    assert whole["unique_users"] <= len({normalise_student_id(s) for s in LEARNERS})


def test_same_learner_on_three_days_is_one_unique_user_not_three(app, make_client):
    acme, key = make_client()
    snap = app.extensions["client_directory"].client_for_key(db.session, key)
    for offset in range(3):
        now = dt.datetime.combine(DAY0 + dt.timedelta(days=offset), dt.time(23, 59, 59), dt.UTC)
        record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                      Beacon(course="Fire Safety", student_id="jane@example.com", student_name="Jane"), now=now)
    # One second later it is the next UTC day.
    record_beacon(db.session, app.extensions["pseudonymiser"], app.extensions["client_directory"], snap,
                  Beacon(course="Fire Safety", student_id="jane@example.com", student_name="Jane"),
                  now=dt.datetime.combine(DAY0 + dt.timedelta(days=3), dt.time(0, 0, 0), dt.UTC))
    result = report(acme.id, DAY0, DAY0 + dt.timedelta(days=3))
    assert result["unique_users"] == 1
    assert result["launches"] == 4
    assert [d["unique_users"] for d in result["courses"][0]["days"]] == [1, 1, 1, 1]


def test_clients_are_counted_apart(client, make_client):
    acme, acme_key = make_client()
    other, other_key = make_client()
    client.post(URL, json=beacon_body(acme_key, student_id="same@example.com"))
    client.post(URL, json=beacon_body(other_key, student_id="same@example.com"))
    client.post(URL, json=beacon_body(other_key, student_id="two@example.com"))
    today = dt.datetime.now(dt.UTC).date()
    assert report(acme.id, today, today)["unique_users"] == 1
    assert report(other.id, today, today)["unique_users"] == 2


# --- properties: shuffling or repeating the stream changes nothing ------------

beacon_strategy = st.fixed_dictionaries({
    "student_id": st.sampled_from(["Jane@Example.com", " jane@example.COM ", "JANE@EXAMPLE.COM", "s-1", "S-1",
                                   "bob@x.org", "\u00a0Bob@X.org", " Undefined "]),
    "course": st.sampled_from(COURSES[:2]),
    "day": st.integers(0, 2).map(lambda n: DAY0 + dt.timedelta(days=n)),
    "event": st.sampled_from(["launch", "launch", "completed"]),
})


def _feed(app, key: str, stream: list[dict]) -> None:
    directory = app.extensions["client_directory"]
    snap = directory.client_for_key(db.session, key)
    for beacon in stream:
        data = _schema.load({"key": key, "course": beacon["course"], "student_id": beacon["student_id"],
                             "student_name": "N", "event": beacon["event"], "event_id": beacon["event_id"]})
        record_beacon(db.session, app.extensions["pseudonymiser"], directory, snap,
                      Beacon(course=data["course"], student_id=data["student_id"], student_name=data["student_name"],
                             event=data["event"], event_id=data["event_id"]),
                      now=dt.datetime.combine(beacon["day"], dt.time(12), dt.UTC))


@pytest.mark.parametrize("anonymised", [False, True], ids=["verbatim", "anonymised"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(beacon_strategy, min_size=1, max_size=12), data=st.data())
def test_counts_ignore_order_and_repeats(app, make_client, anonymised, stream, data):
    for beacon in stream:
        beacon["event_id"] = str(uuid.uuid4())
    shuffled = data.draw(st.permutations(stream))
    repeats = data.draw(st.lists(st.sampled_from(stream), max_size=6))
    replayed = data.draw(st.permutations(list(shuffled) + repeats))

    # A fresh client per example: hypothesis reuses the function's database.
    acme, key = make_client(anonymised=anonymised)
    _feed(app, key, replayed)
    start, end = DAY0, DAY0 + dt.timedelta(days=2)
    assert report(acme.id, start, end) == expected_report(acme.slug, stream, start, end)
