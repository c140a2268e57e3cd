"""Billing figures, counted in the database from the daily usage rows.

Unique users over a range are a distinct count over ``daily_usage`` (never a
sum of daily figures); dates are UTC days, both ends inclusive.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from ..models import Client, Course, DailyUsage


def _in_range(client_id: int, start: dt.date, end: dt.date):
    return (DailyUsage.client_id == client_id, DailyUsage.day >= start, DailyUsage.day <= end)


def unique_users(session: Session, client_id: int, start: dt.date, end: dt.date) -> int:
    return session.scalar(
        select(func.count(distinct(DailyUsage.learner_id))).where(*_in_range(client_id, start, end))
    ) or 0


def launches(session: Session, client_id: int, start: dt.date, end: dt.date) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(DailyUsage.launches), 0)).where(*_in_range(client_id, start, end))
    ) or 0


def usage_report(session: Session, client: Client, start: dt.date, end: dt.date) -> dict:
    """Everything the usage API returns: totals, per course, per course and day."""
    where = _in_range(client.id, start, end)
    per_course = session.execute(
        select(Course.title, func.count(distinct(DailyUsage.learner_id)), func.sum(DailyUsage.launches))
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*where).group_by(Course.title).order_by(Course.title)
    ).all()
    per_day = session.execute(
        select(Course.title, DailyUsage.day, func.count(), func.sum(DailyUsage.launches))
        .join(Course, Course.id == DailyUsage.course_id)
        .where(*where).group_by(Course.title, DailyUsage.day).order_by(Course.title, DailyUsage.day)
    ).all()
    days_by_course: dict[str, list[dict]] = defaultdict(list)
    for title, day, users, day_launches in per_day:
        days_by_course[title].append({"date": day, "unique_users": users, "launches": int(day_launches or 0)})
    return {
        "client": client.slug,
        "from_": start,
        "to": end,
        "unique_users": unique_users(session, client.id, start, end),
        "launches": int(launches(session, client.id, start, end)),
        "courses": [
            {"course": title, "unique_users": users, "launches": int(course_launches or 0),
             "days": days_by_course[title]}
            for title, users, course_launches in per_course
        ],
    }
