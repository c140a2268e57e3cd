"""Webhook signing secrets encrypted at rest (Fernet under WEBHOOK_SECRET_KEYS).

The column widens to hold a Fernet token, and every plaintext ``whsec_`` secret
is encrypted in place with the first key of the running configuration.

Revision ID: 5e0c1f7a9d21
Revises: fec3fd8be748
Create Date: 2026-12-06 15:50:00

"""
import sqlalchemy as sa
from alembic import op
from flask import current_app

from app.secretbox import keyring

# revision identifiers, used by Alembic.
revision = '5e0c1f7a9d21'
down_revision = 'fec3fd8be748'
branch_labels = None
depends_on = None

endpoints = sa.table('webhook_endpoints', sa.column('id', sa.Integer), sa.column('secret', sa.String))


def upgrade():
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=100), type_=sa.String(length=255),
                              existing_nullable=False)
    ring = keyring(current_app.config["WEBHOOK_SECRET_KEYS"])
    connection = op.get_bind()
    for row in connection.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        if row.secret.startswith("whsec_"):
            connection.execute(endpoints.update().where(endpoints.c.id == row.id)
                               .values(secret=ring.encrypt(row.secret.encode()).decode()))


def downgrade():
    ring = keyring(current_app.config["WEBHOOK_SECRET_KEYS"])
    connection = op.get_bind()
    for row in connection.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        if not row.secret.startswith("whsec_"):
            connection.execute(endpoints.update().where(endpoints.c.id == row.id)
                               .values(secret=ring.decrypt(row.secret.encode()).decode()))
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=255), type_=sa.String(length=100),
                              existing_nullable=False)
