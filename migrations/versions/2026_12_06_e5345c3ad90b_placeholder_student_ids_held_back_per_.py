"""Placeholder student IDs held back per client: each client's list, and the held-back beacons.

A client's list is NULL until a CSM edits it (the defaults apply). Beacons
stored before this revision stay as they were (already counted).

Revision ID: e5345c3ad90b
Revises: 148169791f03
Create Date: 2026-12-06 15:00:42.924730

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e5345c3ad90b'
down_revision = '148169791f03'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('held_back_beacons',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('identity', sa.String(length=255), nullable=False),
    sa.Column('pseudonymised', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('placeholder', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lms_host', sa.String(length=255), nullable=True),
    sa.Column('scorm_version', sa.String(length=16), nullable=True),
    sa.Column('package_id', sa.String(length=64), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_held_back_beacons_client_id_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_held_back_beacons_course_id_courses'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_held_back_beacons')),
    sa.UniqueConstraint('event_id', name=op.f('uq_held_back_beacons_event_id'))
    )
    with op.batch_alter_table('held_back_beacons', schema=None) as batch_op:
        batch_op.create_index('ix_held_back_beacons_client_released', ['client_id', 'released_at', 'received_at'], unique=False)

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placeholder_ids', sa.JSON(), nullable=True))



def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('placeholder_ids')

    with op.batch_alter_table('held_back_beacons', schema=None) as batch_op:
        batch_op.drop_index('ix_held_back_beacons_client_released')

    op.drop_table('held_back_beacons')
