"""Clients may seal their packages with a key of their own (the tracker sends only HMACs of IDs).

Revision ID: 5e41ed0c5ea1
Revises: 1c450e8d3739
Create Date: 2026-12-06 15:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5e41ed0c5ea1'
down_revision = '1c450e8d3739'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('sealed')
