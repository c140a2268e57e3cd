"""A client's customer success manager, and staff who opt in to every client's alert e-mails.

Alert e-mails used to go to every active admin and CSM. From this revision they go to the client's
CSM (``client_csms``: one row per client that has one; none for existing clients) and to staff who
opted in (``staff_users.all_client_alerts``); a client without a CSM still mails every active CSM.
A table rather than a ``clients`` column: SQLite can only add a column's foreign key inline (which it
then does not report back, so the schema check sees drift), and a batch copy of ``clients`` would
cascade-delete every client's data with foreign keys on.

Existing admins are opted in here: they received every client's alerts until now, and an admin
who stopped receiving them on an upgrade would not notice it (no mail looks like no problem).
Each can opt out on their account page. Existing CSMs keep receiving everything too, since no
client has a CSM yet. Staff users created from now on start opted out.

Revision ID: b7e2d9f4c815
Revises: a4d8c1e6f203
Create Date: 2026-12-06 21:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b7e2d9f4c815'
down_revision = 'a4d8c1e6f203'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('staff_users', sa.Column('all_client_alerts', sa.Boolean(), server_default=sa.false(),
                                           nullable=False))
    op.create_table(
        'client_csms',
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('staff_user_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_client_csms_client_id_clients'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'],
                                name=op.f('fk_client_csms_staff_user_id_staff_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('client_id', name=op.f('pk_client_csms')),
    )
    op.create_index(op.f('ix_client_csms_staff_user_id'), 'client_csms', ['staff_user_id'], unique=False)
    staff = sa.table('staff_users', sa.column('role', sa.String), sa.column('all_client_alerts', sa.Boolean))
    op.execute(staff.update().where(staff.c.role == 'admin').values(all_client_alerts=True))


def downgrade():
    op.drop_index(op.f('ix_client_csms_staff_user_id'), table_name='client_csms')
    op.drop_table('client_csms')
    op.drop_column('staff_users', 'all_client_alerts')
