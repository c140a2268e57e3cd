"""Billing figures, counted in the database from the daily usage rows.

Unique users over a range are a distinct count over ``daily_usage`` (never a
sum of daily figures) of ``PERSON``: two identities of one person that were
merged (``learners/merges.py``) count once. Dates are UTC days, both ends
inclusive. Each figure has one function here, and the billing page, both CSVs
and the usage API all call the same one, so they cannot disagree. Every count happens in SQL; Python only
arranges rows the database has already counted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import case, distinct, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.identity.student_ids import short_reference
from app.ingest import held_back
from app.learners.merges import PERSON, USAGE_LEARNER, with_people
from app.licensing import licences
from app.licensing.models import LicenceTerm
from app.licensing.periods import Period, current_period
from app.models import (
    COMPLETION_KINDS,
    NO_SOURCE,
    Client,
    Course,
    DailyOutcome,
    DailySource,
    DailyUsage,
    Event,
    Learner,
    PackageIssue,
)

# --- totals over a range ---------------------------------------------------------


def _in_range(client_id: int, start: dt.date, end: dt.date, course_id: int | None = None):
    """The usage rows of a client's range, of one course when ``course_id`` is given (the course filter)."""
    where = (DailyUsage.client_id == client_id, DailyUsage.day >= start, DailyUsage.day <= end)
    return where if course_id is None else (*where, DailyUsage.course_id == course_id)


def _days_in_range(model, client_id: int, start: dt.date, end: dt.date) -> tuple:
    """The rows of a per-day table (``DailySource``, ``DailyOutcome``) on the range's UTC days."""
    return (model.client_id == client_id, model.day >= start, model.day <= end)


# --- the course filter --------------------------------------------------------------


def client_courses(session: Session, client_id: int) -> list[Course]:
    """The client's courses (every title a package has reported), by title: the filter's choices."""
    return list(session.scalars(select(Course).where(Course.client_id == client_id).order_by(Course.title)))


def find_course(session: Session, client_id: int, title: str) -> Course | None:
    """The client's course with this title (already normalised as ingest stores it); None if none."""
    return session.scalar(select(Course).where(Course.client_id == client_id, Course.title == title))


def unique_users(session: Session, client_id: int, start: dt.date, end: dt.date,
                 course_id: int | None = None) -> int:
    """Distinct learners who used any course on any day of the range."""
    return session.scalar(
        with_people(select(func.count(distinct(PERSON)))).where(*_in_range(client_id, start, end, course_id))
    ) or 0


def launches(session: Session, client_id: int, start: dt.date, end: dt.date,
             course_id: int | None = None) -> int:
    return int(session.scalar(
        select(func.coalesce(func.sum(DailyUsage.launches), 0))
        .where(*_in_range(client_id, start, end, course_id))
    ) or 0)


def completers(session: Session, client_id: int, start: dt.date, end: dt.date,
               course_id: int | None = None) -> int:
    """Distinct learners with a completion (``completed`` or ``passed``) in the range."""
    return session.scalar(
        with_people(select(func.count(distinct(PERSON))))
        .where(*_in_range(client_id, start, end, course_id), DailyUsage.completions > 0)
    ) or 0


# --- a range against the one before it ---------------------------------------------


@dataclass(frozen=True)
class RangeFigures:
    """The headline figures of one range (the client page's cards, the usage API's totals)."""

    period: Period
    unique_users: int
    launches: int
    completers: int


def range_figures(session: Session, client_id: int, period: Period,
                  course_id: int | None = None) -> RangeFigures:
    return RangeFigures(period, unique_users(session, client_id, period.start, period.end, course_id),
                        launches(session, client_id, period.start, period.end, course_id),
                        completers(session, client_id, period.start, period.end, course_id))


def previous_range(period: Period) -> Period | None:
    """The range a range is compared with: the same number of days, ending the day before it begins
    (1-31 Oct: 31 Aug-30 Sep; the first 6 days of a month: the 6 days before). None when that
    would begin before 1 January of year 1, where the calendar (``datetime.date``) ends."""
    try:
        return period.previous()
    except OverflowError:
        return None


def change_ratio(current: int, previous: int) -> float | None:
    """The change from ``previous`` to ``current`` as a fraction of ``previous``; None when
    ``previous`` is 0: no ratio of nothing (a page says "new", or no change from 0 to 0)."""
    return (current - previous) / previous if previous else None


@dataclass(frozen=True)
class Change:
    """One figure of a range against the same figure of the previous range."""

    current: int
    previous: int

    @property
    def difference(self) -> int:
        return self.current - self.previous

    @property
    def ratio(self) -> float | None:
        return change_ratio(self.current, self.previous)

    @property
    def new(self) -> bool:
        """Used in this range, not at all in the previous one: a change with no percentage."""
        return self.previous == 0 and self.current > 0


@dataclass(frozen=True)
class Comparison:
    current: RangeFigures
    previous: RangeFigures

    def change(self, figure: str) -> Change:
        """``figure``: ``unique_users``, ``launches`` or ``completers``."""
        return Change(getattr(self.current, figure), getattr(self.previous, figure))


def comparison(session: Session, client_id: int, current: RangeFigures,
               course_id: int | None = None) -> Comparison | None:
    """The range's figures against the previous range's (the same course filter); None when the
    previous range cannot exist (``previous_range``)."""
    before = previous_range(current.period)
    if before is None:
        return None
    return Comparison(current, range_figures(session, client_id, before, course_id))


def unique_users_by_client(session: Session, client_ids: list[int], start: dt.date,
                           end: dt.date) -> dict[int, int]:
    """Distinct learners per client over one range, for many clients in one query."""
    if not client_ids:
        return {}
    rows = session.execute(
        with_people(select(DailyUsage.client_id, func.count(distinct(PERSON))))
        .where(DailyUsage.client_id.in_(client_ids), DailyUsage.day >= start, DailyUsage.day <= end)
        .group_by(DailyUsage.client_id)
    ).all()
    counts = dict.fromkeys(client_ids, 0)
    counts.update({client_id: users for client_id, users in rows})
    return counts


# --- per day, per course ---------------------------------------------------------


@dataclass(frozen=True)
class DayTotal:
    day: dt.date
    unique_users: int
    launches: int


@dataclass(frozen=True)
class CourseDay:
    day: dt.date
    course: str
    unique_users: int
    launches: int


@dataclass(frozen=True)
class CourseTotal:
    course: str
    unique_users: int
    launches: int
    completers: int

    @property
    def completion_rate(self) -> float | None:
        """Completers over unique users of the course in the range; None with no users."""
        return self.completers / self.unique_users if self.unique_users else None


def daily_totals(session: Session, client_id: int, start: dt.date, end: dt.date,
                 course_id: int | None = None) -> list[DayTotal]:
    """Per UTC day: distinct learners over all courses, and launches. Days without use are absent."""
    rows = session.execute(
        with_people(select(DailyUsage.day, func.count(distinct(PERSON)), func.sum(DailyUsage.launches)))
        .where(*_in_range(client_id, start, end, course_id))
        .group_by(DailyUsage.day).order_by(DailyUsage.day)
    ).all()
    return [DayTotal(day, users, int(day_launches or 0)) for day, users, day_launches in rows]


def slice_totals(session: Session, client_id: int, parts: list[Period],
                 course_id: int | None = None) -> list[DayTotal]:
    """Per slice of a range (weeks, months): distinct learners over the slice, and launches.

    One query: each row is put in its slice by a CASE over the slice starts, so
    a week's unique users are distinct over the week, never a sum of its days.
    Slices without use are absent; each row's ``day`` is its slice's first day.
    """
    if not parts:
        return []
    slot = case(*((DailyUsage.day <= part.end, i) for i, part in enumerate(parts)), else_=len(parts))
    rows = session.execute(
        with_people(select(slot.label("slot"), func.count(distinct(PERSON)), func.sum(DailyUsage.launches)))
        .where(*_in_range(client_id, parts[0].start, parts[-1].end, course_id))
        .group_by("slot").order_by("slot")
    ).all()
    return [DayTotal(parts[i].start, users, int(slice_launches or 0)) for i, users, slice_launches in rows
            if i < len(parts)]


def course_days(session: Session, client_id: int, start: dt.date, end: dt.date,
                course_id: int | None = None) -> list[CourseDay]:
    """Unique users and launches per course and UTC day, ordered by date then course title."""
    rows = session.execute(
        with_people(select(DailyUsage.day, Course.title, func.count(distinct(PERSON)),
                           func.sum(DailyUsage.launches)))
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*_in_range(client_id, start, end, course_id))
        .group_by(DailyUsage.day, Course.title).order_by(DailyUsage.day, Course.title)
    ).all()
    return [CourseDay(day, title, users, int(day_launches or 0)) for day, title, users, day_launches in rows]


def course_totals(session: Session, client_id: int, start: dt.date, end: dt.date,
                  course_id: int | None = None) -> list[CourseTotal]:
    """Per course over the whole range: distinct learners, launches, distinct completers."""
    completed = case((DailyUsage.completions > 0, PERSON))
    rows = session.execute(
        with_people(select(Course.title, func.count(distinct(PERSON)), func.sum(DailyUsage.launches),
                           func.count(distinct(completed))))
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*_in_range(client_id, start, end, course_id))
        .group_by(Course.title).order_by(Course.title)
    ).all()
    return [CourseTotal(title, users, int(course_launches or 0), done)
            for title, users, course_launches, done in rows]


# --- where the usage came from: LMS origins and packages -------------------------------


@dataclass(frozen=True)
class SourceUsage:
    """Distinct learners and launches of one LMS origin or one package over a range. A learner
    who came from two origins counts in each, so the rows may add up to more than the range's users."""

    source: str | None
    unique_users: int
    launches: int
    issue: PackageIssue | None = None


def _by_source(session: Session, client_id: int, start: dt.date, end: dt.date, column,
               course_id: int | None) -> list[tuple[str | None, int, int]]:
    """(source, distinct people, launches) per value of a ``DailySource`` column over the range.

    Read from the per-day source rows that ingest keeps with each event (any kind: a learner
    whose only beacon from a host is a status still used it), never from ``events``; people
    are ``PERSON``s as everywhere: merged identities are one. ``NO_SOURCE`` comes back as None.
    """
    source_learner = aliased(Learner, name="source_learner")
    person = func.coalesce(source_learner.merged_into_id, DailySource.learner_id)
    where = list(_days_in_range(DailySource, client_id, start, end))
    if course_id is not None:
        where.append(DailySource.course_id == course_id)
    rows = session.execute(
        select(column, func.count(distinct(person)), func.sum(DailySource.launches))
        .join(source_learner, source_learner.id == DailySource.learner_id)
        .where(*where).group_by(column)
    ).all()
    # Most learners first; ties by name, the unknown (None) last.
    return sorted(((source if source != NO_SOURCE else None, users, int(n or 0)) for source, users, n in rows),
                  key=lambda row: (-row[1], row[0] is None, row[0] or ""))


def origin_usage(session: Session, client_id: int, start: dt.date, end: dt.date,
                 course_id: int | None = None) -> list[SourceUsage]:
    """Per LMS origin (the host the beacons came from; None when the browser sent no Origin)."""
    return [SourceUsage(host, users, n) for host, users, n in
            _by_source(session, client_id, start, end, DailySource.lms_host, course_id)]


def package_usage(session: Session, client_id: int, start: dt.date, end: dt.date,
                  course_id: int | None = None) -> list[SourceUsage]:
    """Per package ID the beacons carried, with the package this server issued under that ID
    (this client's; None for a package built elsewhere or an ID it does not know); a source of
    None: beacons without a package ID (older packages)."""
    rows = _by_source(session, client_id, start, end, DailySource.package_id, course_id)
    ids = {}
    for package_id, _, _ in rows:
        try:
            ids[package_id] = uuid.UUID(package_id) if package_id else None
        except ValueError:
            ids[package_id] = None
    wanted = [value for value in ids.values() if value is not None]
    issues = {issue.package_id: issue for issue in session.scalars(
        select(PackageIssue).where(PackageIssue.client_id == client_id, PackageIssue.package_id.in_(wanted)))
    } if wanted else {}
    return [SourceUsage(package_id, users, n, issues.get(ids[package_id])) for package_id, users, n in rows]


# --- account attributes ----------------------------------------------------------


@dataclass(frozen=True)
class Milestones:
    """Totango-style account attributes: when the client's learners first enrolled and completed."""

    first_enrolled: dt.date | None
    first_completed: dt.datetime | None


def milestones(session: Session, client_id: int) -> Milestones:
    first_enrolled = session.scalar(select(func.min(DailyUsage.day)).where(DailyUsage.client_id == client_id))
    first_completed = session.scalar(select(func.min(DailyOutcome.first_at)).where(
        DailyOutcome.client_id == client_id, DailyOutcome.kind.in_(COMPLETION_KINDS)))
    return Milestones(first_enrolled, first_completed)


# --- who accessed what -----------------------------------------------------------

LEARNER_SORTS = ("student", "name", "courses", "first_access", "last_access", "launches")


@dataclass(frozen=True)
class LearnerSummary:
    learner_id: int
    identity: str
    name: str | None
    pseudonymised: bool
    courses: int
    first_access: dt.datetime
    last_access: dt.datetime
    launches: int

    @property
    def reference(self) -> str:
        """What a page shows for the learner: the student ID, or a short pseudonym reference."""
        return short_reference(self.identity) if self.pseudonymised else self.identity

    @property
    def display_name(self) -> str:
        return "" if self.pseudonymised else (self.name or "")


def _learner_search(search: str | None):
    if not search:
        return ()
    term = search.strip().casefold()
    if not term:
        return ()
    by_identity = func.lower(Learner.identity).contains(term, autoescape=True)
    # Names of pseudonymised learners are digests: never searched, never shown.
    by_name = (Learner.pseudonymised.is_(False)) & func.lower(Learner.name).contains(term, autoescape=True)
    return (or_(by_identity, by_name),)


def learner_summaries(session: Session, client_id: int, start: dt.date, end: dt.date, *,
                      search: str | None = None, sort: str = "last_access", descending: bool = True,
                      limit: int = 100, offset: int = 0,
                      course_id: int | None = None) -> tuple[list[LearnerSummary], int]:
    """One row per learner who used the client's courses in the range, and how many such learners."""
    courses = func.count(distinct(DailyUsage.course_id)).label("courses")
    first = func.min(DailyUsage.first_at).label("first_access")
    last = func.max(DailyUsage.last_at).label("last_access")
    total_launches = func.sum(DailyUsage.launches).label("launches")
    where = (*_in_range(client_id, start, end, course_id), *_learner_search(search))
    # ``Learner`` is the person each row counts as: merged identities are one row, under the learner
    # they were merged into.
    count = session.scalar(
        with_people(select(func.count(distinct(PERSON))))
        .join(Learner, Learner.id == PERSON).where(*where)
    ) or 0
    columns = {"student": Learner.identity, "name": Learner.name, "courses": courses, "first_access": first,
               "last_access": last, "launches": total_launches}
    key = columns.get(sort, last)
    order = [key.desc() if descending else key.asc(), Learner.id.asc()]
    rows = session.execute(
        with_people(select(Learner.id, Learner.identity, Learner.name, Learner.pseudonymised, courses, first,
                           last, total_launches))
        .join(Learner, Learner.id == PERSON).where(*where)
        .group_by(Learner.id, Learner.identity, Learner.name, Learner.pseudonymised)
        .order_by(*order).limit(limit).offset(offset)
    ).all()
    return [LearnerSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7] or 0)) for r in rows], count


def learner_course_titles(session: Session, client_id: int, learner_ids: list[int], start: dt.date,
                          end: dt.date, course_id: int | None = None) -> dict[int, list[tuple[str, Outcome]]]:
    """The courses each of the given learners used in the range, each with what it reported
    (for one page of learners)."""
    if not learner_ids:
        return {}
    rows = session.execute(
        with_people(select(PERSON, Course.title).distinct())
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*_in_range(client_id, start, end, course_id), PERSON.in_(learner_ids))
        .order_by(PERSON, Course.title)
    ).all()
    outcomes = learner_outcomes(session, client_id, start, end, learner_ids)
    titles: dict[int, list[tuple[str, Outcome]]] = defaultdict(list)
    for learner_id, title in rows:
        titles[learner_id].append((title, outcomes.get((learner_id, title), Outcome())))
    return titles


# What a learner's course shows when the course reported no status in the range.
NO_STATUS = "launched"


@dataclass(frozen=True)
class Outcome:
    """What a course reported for one learner in a range: the first time of each status, and the
    last status reported (a retake that passes after a fail shows ``passed``)."""

    completed_at: dt.datetime | None = None
    passed_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    status: str = NO_STATUS


def learner_outcomes(session: Session, client_id: int, start: dt.date, end: dt.date,
                     learner_ids: list[int] | None = None) -> dict[tuple[int, str], Outcome]:
    """Per (person, course title): the statuses reported in the range (UTC days, inclusive).

    A person is a learner with every identity merged into it (``PERSON``), so two identities'
    statuses are one person's. Pairs without a status are absent (``Outcome()`` is theirs).
    One grouped query over the per-day status rows (``DailyOutcome``, never ``events``); Python
    only picks the latest of at most three rows per pair.
    """
    outcome_learner = aliased(Learner, name="outcome_learner")
    person = func.coalesce(outcome_learner.merged_into_id, DailyOutcome.learner_id)
    query = (
        select(person, Course.title, DailyOutcome.kind, func.min(DailyOutcome.first_at),
               func.max(DailyOutcome.last_at))
        .join(outcome_learner, outcome_learner.id == DailyOutcome.learner_id)
        .join(Course, Course.id == DailyOutcome.course_id)
        .where(*_days_in_range(DailyOutcome, client_id, start, end))
        .group_by(person, Course.title, DailyOutcome.kind)
    )
    if learner_ids is not None:
        if not learner_ids:
            return {}
        query = query.where(person.in_(learner_ids))
    found: dict[tuple[int, str], dict] = defaultdict(dict)
    latest: dict[tuple[int, str], tuple[dt.datetime, str]] = {}
    for learner_id, title, kind, first, last in session.execute(query):
        key = (learner_id, title)
        found[key][f"{kind}_at"] = first
        if key not in latest or (last, kind) > latest[key]:
            latest[key] = (last, kind)
    return {key: Outcome(status=latest[key][1], **times) for key, times in found.items()}


@dataclass(frozen=True)
class LearnerCourse:
    identity: str
    name: str | None
    pseudonymised: bool
    course: str
    first_access: dt.datetime
    last_access: dt.datetime
    launches: int
    outcome: Outcome


def learner_courses(session: Session, client_id: int, start: dt.date, end: dt.date,
                    course_id: int | None = None) -> list[LearnerCourse]:
    """One row per learner and course used in the range (learners.csv), with what the course
    reported (``Outcome``); merged identities are one learner."""
    rows = session.execute(
        with_people(select(Learner.id, Learner.identity, Learner.name, Learner.pseudonymised, Course.title,
                           func.min(DailyUsage.first_at), func.max(DailyUsage.last_at),
                           func.sum(DailyUsage.launches)))
        .join(Learner, Learner.id == PERSON)
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*_in_range(client_id, start, end, course_id))
        .group_by(Learner.id, Learner.identity, Learner.name, Learner.pseudonymised, Course.title)
        .order_by(Learner.identity, Course.title)
    ).all()
    outcomes = learner_outcomes(session, client_id, start, end)
    return [LearnerCourse(r[1], r[2], r[3], r[4], r[5], r[6], int(r[7] or 0),
                          outcomes.get((r[0], r[4]), Outcome())) for r in rows]


def find_learner(session: Session, client_id: int, learner_id: int) -> Learner | None:
    """The learner if it belongs to this client; None otherwise."""
    return session.scalar(select(Learner).where(Learner.id == learner_id, Learner.client_id == client_id))


@dataclass(frozen=True)
class LearnerEvent:
    received_at: dt.datetime
    course: str
    kind: str
    lms_host: str | None


def learner_events(session: Session, client_id: int, learner_id: int, limit: int = 1000) -> list[LearnerEvent]:
    """A learner's launches and status changes, newest first, with those of identities merged into it."""
    rows = session.execute(
        select(Event.received_at, Course.title, Event.kind, Event.lms_host)
        .join(Course, Course.id == Event.course_id)
        .where(Event.client_id == client_id, Event.learner_id.in_(
            select(USAGE_LEARNER.id).where(or_(USAGE_LEARNER.id == learner_id,
                                               USAGE_LEARNER.merged_into_id == learner_id))))
        .order_by(Event.received_at.desc(), Event.id.desc()).limit(limit)
    ).all()
    return [LearnerEvent(*row) for row in rows]


# --- the usage API ---------------------------------------------------------------


def usage_report(session: Session, client: Client, start: dt.date, end: dt.date,
                 course: Course | None = None) -> dict:
    """Everything the usage API returns: totals, per course, per course and day, and the previous
    range's totals (``previous_range``); of one course when ``course`` is given (the course filter).
    Seat figures are the client's whatever the filter: a seat is a learner of any course."""
    course_id = None if course is None else course.id
    days_by_course: dict[str, list[dict]] = defaultdict(list)
    for row in course_days(session, client.id, start, end, course_id):
        days_by_course[row.course].append({"date": row.day, "unique_users": row.unique_users,
                                           "launches": row.launches})
    figures = range_figures(session, client.id, Period(start, end), course_id)
    compared = comparison(session, client.id, figures, course_id)
    return {
        "client": client.slug,
        "from_": start,
        "to": end,
        "course": None if course is None else course.title,
        "unique_users": figures.unique_users,
        "launches": figures.launches,
        "completers": figures.completers,
        "previous": None if compared is None else _previous_report(compared.previous),
        "courses": [
            {"course": total.course, "unique_users": total.unique_users, "launches": total.launches,
             "completers": total.completers, "days": days_by_course[total.course]}
            for total in course_totals(session, client.id, start, end, course_id)
        ],
        "origins": [{"lms_host": row.source, "unique_users": row.unique_users, "launches": row.launches}
                    for row in origin_usage(session, client.id, start, end, course_id)],
        "packages": [_package_report(row) for row in package_usage(session, client.id, start, end, course_id)],
        "seats": range_seats(session, client, start, end),
        # Beacons with a placeholder student ID, counted in none of the figures above.
        "held_back": held_back.figures(session, client.id, start, end, course_id=course_id).as_report(),
    }


def _previous_report(figures: RangeFigures) -> dict:
    return {"from_": figures.period.start, "to": figures.period.end, "unique_users": figures.unique_users,
            "launches": figures.launches, "completers": figures.completers}


def _package_report(row: SourceUsage) -> dict:
    issue = row.issue
    return {"package": row.source, "unique_users": row.unique_users, "launches": row.launches,
            "issued": None if issue is None else {"course": issue.course_title, "scorm_version": issue.scorm_version,
                                                  "mode": issue.mode, "issued_at": issue.created_at}}


def overage(used: int, limit: int | None) -> int | None:
    """Seats used beyond the limit (0 within it); None without a limit."""
    return None if limit is None else max(0, used - limit)


def billable_seats(used: int, limit: int | None) -> int:
    """What is invoiced for a seat window: the seats bought (the limit) or the seats used when
    more (the limit plus the overage); without a limit, the seats used."""
    return used if limit is None else max(used, limit)


def range_seats(session: Session, client: Client, start: dt.date, end: dt.date) -> dict | None:
    """The seat figures of the one licence seat window that holds the whole range (seats used over
    that whole window, as on the licence page); None when no term is in force on both ends or the
    range spans more than one window: a range's users are then not a seat figure."""
    term = licences.term_in_force(session, client.id, start)
    if term is None or term.ends_on < end:
        return None
    window = licences.seat_window(term, start)
    if window.end < end:
        return None
    used = licences.seats_used(session, client.id, window)
    limit = term.seat_limit
    return {"term_start": term.starts_on, "term_end": term.ends_on, "seat_window": term.seat_window,
            "window_start": window.start, "window_end": window.end, "seat_limit": limit, "seats_used": used,
            "overage": overage(used, limit), "billable_seats": billable_seats(used, limit)}


# --- the vendor's overview and the invoice export ---------------------------------


@dataclass(frozen=True)
class ClientOverview:
    """One client's invoice line for the seat window that contains the day asked about.

    ``period`` is that window (``current_period``: the term's seat window, else the
    client's licence period, else the calendar month); ``unique_users`` are the seats
    used in it, counted as on the licence page (distinct learners, merged identities once).
    """

    slug: str
    name: str
    active: bool
    anonymised: bool
    period: Period
    unique_users: int
    launches: int
    previous_unique_users: int
    seat_limit: int | None
    term: LicenceTerm | None
    outlook: licences.Forecast

    @property
    def seats_used(self) -> int:
        return self.unique_users

    @property
    def forecast(self) -> int:
        """The expected seats at the window's end (its range and how sure: ``outlook``)."""
        return self.outlook.expected

    @property
    def sureness(self) -> str:
        """How sure the forecast is, in the licence page's words (its statement says why)."""
        return self.outlook.sureness

    @property
    def overage(self) -> int | None:
        return overage(self.unique_users, self.seat_limit)

    @property
    def billable_seats(self) -> int:
        return billable_seats(self.unique_users, self.seat_limit)

    @property
    def seat_use(self) -> float | None:
        """Unique users over the seat limit (1.0 is the whole allowance); None without a limit."""
        return self.unique_users / self.seat_limit if self.seat_limit else None

    @property
    def trend(self) -> float | None:
        """Change against the previous period of the same length; None when that had no users."""
        return change_ratio(self.unique_users, self.previous_unique_users)


def overview(session: Session, today: dt.date, *, on: dt.date | None = None,
             clients: list[Client] | None = None) -> list[ClientOverview]:
    """Every client (or the ones given) with the seat window that contains ``on`` (default today):
    its unique users and launches, the previous period's users, the limit and a forecast.

    Figures count what is stored now (``today``): a window that has ended gives its final
    figures, and its forecast says so.
    """
    on = on or today
    if clients is None:
        clients = list(session.scalars(select(Client).order_by(Client.name, Client.id)))
    periods = {client.id: current_period(client, on) for client in clients}
    by_period: dict[Period, list[int]] = defaultdict(list)
    for client_id, period in periods.items():
        by_period[period].append(client_id)
    current: dict[int, int] = {}
    previous: dict[int, int] = {}
    launched: dict[int, int] = {}
    for period, client_ids in by_period.items():
        current.update(unique_users_by_client(session, client_ids, period.start, period.end))
        launched.update(launches_by_client(session, client_ids, period.start, period.end))
        before = period.previous()
        previous.update(unique_users_by_client(session, client_ids, before.start, before.end))
    rows = []
    for client in clients:
        period, term = periods[client.id], licences.term_in_force(session, client.id, on)
        limit = seat_limit(session, client, on)
        rows.append(ClientOverview(
            slug=client.slug, name=client.name, active=client.active, anonymised=client.anonymised,
            period=period, unique_users=current[client.id], launches=launched[client.id],
            previous_unique_users=previous[client.id], seat_limit=limit, term=term,
            outlook=_outlook(session, client, term, period, limit, today),
        ))
    return rows


def _outlook(session: Session, client: Client, term: LicenceTerm | None, period: Period, limit: int | None,
             today: dt.date) -> licences.Forecast:
    """The forecast the licence page shows for a term's window in force today; else the same
    model over the period (final once it has ended)."""
    if term is not None and term.starts_on <= today <= term.ends_on and period.start <= today <= period.end:
        return licences.term_forecast(session, client.id, term, today)
    return licences.forecast(session, client.id, period, today, limit)


def launches_by_client(session: Session, client_ids: list[int], start: dt.date, end: dt.date) -> dict[int, int]:
    """Launches per client over one range, for many clients in one query."""
    if not client_ids:
        return {}
    rows = session.execute(
        select(DailyUsage.client_id, func.sum(DailyUsage.launches))
        .where(DailyUsage.client_id.in_(client_ids), DailyUsage.day >= start, DailyUsage.day <= end)
        .group_by(DailyUsage.client_id)
    ).all()
    counts = dict.fromkeys(client_ids, 0)
    counts.update({client_id: int(n or 0) for client_id, n in rows})
    return counts


def seat_limit(session: Session, client: Client, today: dt.date) -> int | None:
    """The seat limit in force: the licence term's (every face asks here); None without a term."""
    term = licences.term_in_force(session, client.id, today)
    return term.seat_limit if term is not None else None
