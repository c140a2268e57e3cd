"""Helpers for the billing tests: a generated workload with known ground truth, and page/CSV readers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import defaultdict
from dataclasses import dataclass, field

import lxml.html
import time_machine
from conftest import beacon_body

BEACONS = "/api/v1/beacons"


@dataclass(frozen=True)
class Sent:
    when: dt.datetime
    student: str
    name: str
    course: str
    kind: str

    @property
    def day(self) -> dt.date:
        return self.when.date()


@dataclass
class Truth:
    """What was sent, and the figures it must give."""

    sent: list[Sent] = field(default_factory=list)

    def within(self, start: dt.date, end: dt.date) -> list[Sent]:
        return [s for s in self.sent if start <= s.day <= end]

    def unique_users(self, start, end) -> int:
        return len({s.student for s in self.within(start, end)})

    def launches(self, start, end) -> int:
        return sum(1 for s in self.within(start, end) if s.kind == "launch")

    def completers(self, start, end) -> int:
        return len({s.student for s in self.within(start, end) if s.kind in ("completed", "passed")})

    def course_days(self, start, end) -> dict[tuple[str, str], tuple[int, int]]:
        users, launches = defaultdict(set), defaultdict(int)
        for s in self.within(start, end):
            users[(s.day.isoformat(), s.course)].add(s.student)
            launches[(s.day.isoformat(), s.course)] += s.kind == "launch"
        return {key: (len(users[key]), launches[key]) for key in users}

    def course_totals(self, start, end) -> dict[str, tuple[int, int, int]]:
        users, launches, done = defaultdict(set), defaultdict(int), defaultdict(set)
        for s in self.within(start, end):
            users[s.course].add(s.student)
            launches[s.course] += s.kind == "launch"
            if s.kind in ("completed", "passed"):
                done[s.course].add(s.student)
        return {c: (len(users[c]), launches[c], len(done[c])) for c in users}

    def daily_unique_sum(self, start, end) -> int:
        per_day = defaultdict(set)
        for s in self.within(start, end):
            per_day[s.day].add(s.student)
        return sum(len(v) for v in per_day.values())

    def learner_courses(self, start, end) -> dict[tuple[str, str], tuple[str, str, int]]:
        rows: dict[tuple[str, str], list[Sent]] = defaultdict(list)
        for s in self.within(start, end):
            rows[(s.student, s.course)].append(s)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return {key: (min(x.when for x in v).strftime(fmt), max(x.when for x in v).strftime(fmt),
                      sum(x.kind == "launch" for x in v)) for key, v in rows.items()}


def send(http, key: str, sent: Sent) -> None:
    """Post one beacon through the real endpoint with the clock frozen at its time."""
    with time_machine.travel(sent.when, tick=False):
        response = http.post(BEACONS, json=beacon_body(key, student_id=sent.student, student_name=sent.name,
                                                       course=sent.course, event=sent.kind))
    assert response.status_code == 204, response.get_data(as_text=True)


def workload(days: list[dt.date], courses: list[str], students: int, per_day: int, seed: int = 5,
             prefix: str = "s") -> Truth:
    """Random launches and completions over the days, with beacons on both edges of each UTC day."""
    rng = random.Random(seed)
    truth = Truth()
    for day in days:
        midnight = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)
        times = [midnight, midnight + dt.timedelta(hours=23, minutes=59, seconds=59)]
        times += [midnight + dt.timedelta(seconds=rng.randrange(1, 86_399)) for _ in range(per_day - 2)]
        for when in sorted(times):
            student = f"{prefix}-{rng.randrange(students)}"
            kind = "completed" if rng.random() < 0.15 else ("passed" if rng.random() < 0.03 else "launch")
            truth.sent.append(Sent(when, student, f"Learner {student}", rng.choice(courses), kind))
    return truth


def post_all(http, key: str, truth: Truth) -> None:
    for sent in truth.sent:
        send(http, key, sent)


def read_csv(response) -> list[dict]:
    text = response.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(text, newline="")))


def page_tree(response):
    assert response.status_code == 200, response.status_code
    return lxml.html.fromstring(response.get_data(as_text=True))


def stat(tree, stat_id: str) -> str:
    return tree.get_element_by_id(stat_id).find_class("value")[0].text_content().strip()


def page_course_totals(tree) -> dict[str, tuple[int, int, int]]:
    rows = tree.xpath('//table[@id="course-totals"]/tbody/tr')
    result = {}
    for row in rows:
        cells = [c.text_content().strip() for c in row.xpath("./td")]
        result[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]))
    return result


def page_course_days(tree) -> dict[tuple[str, str], tuple[int, int]]:
    """The date-by-course matrix as {(date, course): (unique users, launches)}, empty cells left out."""
    table = tree.get_element_by_id("course-days", None)
    if table is None:
        return {}
    courses = [th.text_content().strip() for th in table.xpath("./thead/tr/th")[1:]]
    result = {}
    for row in table.xpath("./tbody/tr"):
        day = row.xpath("./th")[0].text_content().strip()
        for course, cell in zip(courses, row.xpath("./td"), strict=True):
            text = cell.text_content().strip()
            if text == "–":
                continue
            users, launches = text.split()
            result[(day, course)] = (int(users), int(launches.strip("()")))
    return result


def page_course_footer(tree) -> dict[str, tuple[int, int]]:
    table = tree.get_element_by_id("course-days", None)
    if table is None:
        return {}
    courses = [th.text_content().strip() for th in table.xpath("./thead/tr/th")[1:]]
    cells = [c.text_content().split() for c in table.xpath("./tfoot/tr/td")]
    return {course: (int(u), int(v.strip("()"))) for course, (u, v) in zip(courses, cells, strict=True)}
