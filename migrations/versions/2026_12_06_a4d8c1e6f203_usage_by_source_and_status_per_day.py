"""Usage by source and status per day: ``daily_sources`` and ``daily_outcomes``, filled from the events.

The breakdowns by LMS origin and by package, and the learners' course statuses, counted
from ``events`` (a scan of every event of the range). From this revision ingest keeps two
more per-day tables with each event, as it keeps ``daily_usage``, and billing reads them:

* ``daily_sources``: (client, course, learner, UTC day, LMS host, package ID) -> launches,
  first and last event time; a missing host or package ID is stored as '' so the unique key
  holds on SQLite and PostgreSQL alike (NULLs never conflict);
* ``daily_outcomes``: (client, course, learner, UTC day, status) -> first and last time.

Both are filled here from the events already stored, one set-based INSERT ... SELECT ...
GROUP BY each. The downgrade drops them (the events stay: nothing is lost).

Revision ID: a4d8c1e6f203
Revises: 7c3f2a9e4b10
Create Date: 2026-12-06 19:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a4d8c1e6f203'
down_revision = '7c3f2a9e4b10'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _keys() -> list:
    return [
        sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('course_id', sa.Integer(), nullable=False),
        sa.Column('learner_id', BIG_ID, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
    ]


def _references(table: str) -> list:
    return [
        sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f(f'fk_{table}_client_id_clients'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f(f'fk_{table}_course_id_courses'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['learner_id'], ['learners.id'], name=op.f(f'fk_{table}_learner_id_learners'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}')),
    ]


def _day(bind) -> str:
    """The UTC day of ``received_at`` in SQL (SQLite stores naive UTC text; PostgreSQL timestamptz)."""
    if bind.dialect.name == 'postgresql':
        return "CAST(received_at AT TIME ZONE 'UTC' AS DATE)"
    return "date(received_at)"


def upgrade():
    op.create_table(
        'daily_sources', *_keys(),
        sa.Column('lms_host', sa.String(length=255), nullable=False),
        sa.Column('package_id', sa.String(length=64), nullable=False),
        sa.Column('launches', sa.Integer(), nullable=False),
        sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        *_references('daily_sources'),
        sa.UniqueConstraint('client_id', 'course_id', 'learner_id', 'day', 'lms_host', 'package_id',
                            name=op.f('uq_daily_sources_day_source')),
    )
    op.create_index('ix_daily_sources_client_day', 'daily_sources', ['client_id', 'day'], unique=False)
    op.create_index('ix_daily_sources_learner', 'daily_sources', ['learner_id'], unique=False)
    op.create_table(
        'daily_outcomes', *_keys(),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        *_references('daily_outcomes'),
        sa.UniqueConstraint('client_id', 'course_id', 'learner_id', 'day', 'kind',
                            name=op.f('uq_daily_outcomes_client_id_course_id_learner_id_day_kind')),
    )
    op.create_index('ix_daily_outcomes_client_day', 'daily_outcomes', ['client_id', 'day'], unique=False)
    op.create_index('ix_daily_outcomes_learner', 'daily_outcomes', ['learner_id'], unique=False)

    bind = op.get_bind()
    day = _day(bind)
    op.execute(
        "INSERT INTO daily_sources (client_id, course_id, learner_id, day, lms_host, package_id, launches, "
        "first_at, last_at) "
        f"SELECT client_id, course_id, learner_id, {day}, COALESCE(lms_host, ''), COALESCE(package_id, ''), "
        "SUM(CASE WHEN kind = 'launch' THEN 1 ELSE 0 END), MIN(received_at), MAX(received_at) "
        f"FROM events GROUP BY client_id, course_id, learner_id, {day}, COALESCE(lms_host, ''), "
        "COALESCE(package_id, '')"
    )
    op.execute(
        "INSERT INTO daily_outcomes (client_id, course_id, learner_id, day, kind, first_at, last_at) "
        f"SELECT client_id, course_id, learner_id, {day}, kind, MIN(received_at), MAX(received_at) "
        "FROM events WHERE kind IN ('completed', 'passed', 'failed') "
        f"GROUP BY client_id, course_id, learner_id, {day}, kind"
    )


def downgrade():
    op.drop_index('ix_daily_outcomes_learner', table_name='daily_outcomes')
    op.drop_index('ix_daily_outcomes_client_day', table_name='daily_outcomes')
    op.drop_table('daily_outcomes')
    op.drop_index('ix_daily_sources_learner', table_name='daily_sources')
    op.drop_index('ix_daily_sources_client_day', table_name='daily_sources')
    op.drop_table('daily_sources')
