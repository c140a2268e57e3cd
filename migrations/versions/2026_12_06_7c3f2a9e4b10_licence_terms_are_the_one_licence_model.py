"""Licence terms are the one licence model: each client's own licence period and seat limit become terms.

Before this revision a client's seat limit and period came from its term in force, else
from its own columns: the period ``licence_start``–``licence_end`` when it had both ends and
covered the day, else the calendar month, with ``seat_limit`` as the limit. The same
windows, as terms (``record`` at the limit and after expiry: the old columns never blocked):

* both licence dates: a term of exactly that period, seats counted over the term, with
  the client's seat limit (or none);
* a seat limit and no complete period (or the days outside it): a term counting seats per
  calendar month, from the month of the client's first day (its creation or its first
  usage, whichever is earlier) to ``OPEN_END`` (an open-ended setting has no end; edit it);
* days already covered by a term stay that term's (terms won before too).

Each converted client gets an audit entry ``licence.term_from_settings`` holding the old
values and the new term ids: nothing is lost, and the downgrade puts the columns back from it
(and removes those terms). The columns are dropped with a plain ``ALTER TABLE ... DROP
COLUMN`` (SQLite 3.35+ and PostgreSQL), never a batch copy of ``clients``: on SQLite with
foreign keys on, dropping and recreating ``clients`` would cascade-delete every client's data.

Revision ID: 7c3f2a9e4b10
Revises: 5e0c1f7a9d21
Create Date: 2026-12-06 18:50:00.000000

"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '7c3f2a9e4b10'
down_revision = '5e0c1f7a9d21'
branch_labels = None
depends_on = None

OPEN_END = dt.date(2099, 12, 31)
ACTION = "licence.term_from_settings"
ACTOR = "migration 7c3f2a9e4b10"
OLD_COLUMNS = ("licence_start", "licence_end", "seat_limit")

clients = sa.table("clients", sa.column("id", sa.Integer), sa.column("created_at", sa.DateTime(timezone=True)),
                   sa.column("licence_start", sa.Date), sa.column("licence_end", sa.Date),
                   sa.column("seat_limit", sa.Integer))
terms = sa.table("licence_terms", sa.column("id", sa.Integer), sa.column("client_id", sa.Integer),
                 sa.column("starts_on", sa.Date), sa.column("ends_on", sa.Date), sa.column("seat_limit", sa.Integer),
                 sa.column("seat_window", sa.String), sa.column("at_limit", sa.String),
                 sa.column("after_expiry", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))
daily_usage = sa.table("daily_usage", sa.column("client_id", sa.Integer), sa.column("day", sa.Date))
audit = sa.table("audit_entries", sa.column("id", sa.Integer), sa.column("actor", sa.String),
                 sa.column("client_id", sa.Integer), sa.column("action", sa.String), sa.column("before", sa.JSON),
                 sa.column("after", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)))


def _now(bind) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    # The app's UTCDateTime stores naive UTC on SQLite, aware on PostgreSQL.
    return now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now


def _as_date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    return dt.date.fromisoformat(str(value)[:10])


def _without(segment: tuple[dt.date, dt.date], taken: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    """The parts of ``segment`` that no existing term covers."""
    pieces = [segment]
    for start, end in taken:
        rest = []
        for a, b in pieces:
            if end < a or start > b:
                rest.append((a, b))
                continue
            if a < start:
                rest.append((a, start - dt.timedelta(days=1)))
            if end < b:
                rest.append((end + dt.timedelta(days=1), b))
        pieces = rest
    return pieces


def _segments(row, first_day: dt.date) -> list[tuple[dt.date, dt.date, str]]:
    """The windows the old columns produced, as (start, end, seat window)."""
    start, end, limit = row.licence_start, row.licence_end, row.seat_limit
    month_start = first_day.replace(day=1)
    if start and end and start <= end:
        found = [(start, end, "term")]
        if limit is not None:
            if month_start < start:
                found.append((month_start, start - dt.timedelta(days=1), "month"))
            if end < OPEN_END:
                found.append((end + dt.timedelta(days=1), OPEN_END, "month"))
        return sorted(found)
    if limit is None:
        return []  # no limit and no complete period: the calendar month without a limit, as with no term
    return [(min(month_start, OPEN_END.replace(day=1)), OPEN_END, "month")]


def upgrade():
    bind = op.get_bind()
    now = _now(bind)
    rows = bind.execute(sa.select(clients).where(sa.or_(
        clients.c.seat_limit.is_not(None),
        sa.and_(clients.c.licence_start.is_not(None), clients.c.licence_end.is_not(None)),
    )).order_by(clients.c.id)).all()
    for row in rows:
        first_usage = bind.execute(sa.select(sa.func.min(daily_usage.c.day))
                                   .where(daily_usage.c.client_id == row.id)).scalar()
        created = _as_date(row.created_at) or dt.datetime.now(dt.UTC).date()
        first_day = min(d for d in (created, _as_date(first_usage)) if d is not None)
        taken = [(_as_date(t.starts_on), _as_date(t.ends_on)) for t in bind.execute(
            sa.select(terms.c.starts_on, terms.c.ends_on).where(terms.c.client_id == row.id))]
        made = []
        for start, end, window in _segments(row, first_day):
            for a, b in _without((start, end), taken):
                new_id = bind.execute(terms.insert().values(
                    client_id=row.id, starts_on=a, ends_on=b, seat_limit=row.seat_limit, seat_window=window,
                    at_limit="record", after_expiry="record", created_at=now).returning(terms.c.id)).scalar_one()
                made.append({"id": new_id, "starts_on": a.isoformat(), "ends_on": b.isoformat(),
                             "seat_limit": row.seat_limit, "seat_window": window})
        bind.execute(audit.insert().values(
            actor=ACTOR, client_id=row.id, action=ACTION, created_at=now,
            before={"licence_start": row.licence_start.isoformat() if row.licence_start else None,
                    "licence_end": row.licence_end.isoformat() if row.licence_end else None,
                    "seat_limit": row.seat_limit},
            after={"terms": made}))
    for column in OLD_COLUMNS:
        op.drop_column("clients", column)


def downgrade():
    op.add_column("clients", sa.Column("licence_start", sa.Date(), nullable=True))
    op.add_column("clients", sa.Column("licence_end", sa.Date(), nullable=True))
    op.add_column("clients", sa.Column("seat_limit", sa.Integer(), nullable=True))
    bind = op.get_bind()
    entries = bind.execute(sa.select(audit.c.client_id, audit.c.before, audit.c.after)
                           .where(audit.c.action == ACTION, audit.c.client_id.is_not(None))
                           .order_by(audit.c.id)).all()
    for client_id, before, after in entries:  # the latest entry of a client wins
        bind.execute(clients.update().where(clients.c.id == client_id).values(
            licence_start=dt.date.fromisoformat(before["licence_start"]) if before.get("licence_start") else None,
            licence_end=dt.date.fromisoformat(before["licence_end"]) if before.get("licence_end") else None,
            seat_limit=before.get("seat_limit")))
        ids = [t["id"] for t in (after or {}).get("terms", [])]
        if ids:
            bind.execute(terms.delete().where(terms.c.client_id == client_id, terms.c.id.in_(ids)))
