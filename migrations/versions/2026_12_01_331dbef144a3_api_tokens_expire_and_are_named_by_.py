"""API tokens expire and are named by their prefix (list, `token revoke TOKEN_PREFIX`).

Tokens issued before keep no expiry and no prefix: they still work and can be
revoked from the admin's token list.

Revision ID: 331dbef144a3
Revises: 3982d3aedb1e
Create Date: 2026-12-01 23:20:18.286036

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '331dbef144a3'
down_revision = '3982d3aedb1e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_prefix', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_tokens_token_prefix'), ['token_prefix'], unique=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_token_prefix'))
        batch_op.drop_column('expires_at')
        batch_op.drop_column('token_prefix')
