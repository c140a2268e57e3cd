"""Beacon keys tied to the package issue that carries them, revocable one by one.

Keys of packages built before are linked from the audit log (each package.issue
entry names its package and key prefix).

Revision ID: baf227eda4fd
Revises: 331dbef144a3
Create Date: 2026-12-01 23:30:23.841261

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'baf227eda4fd'
down_revision = '331dbef144a3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('package_issue_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_by', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_client_keys_package_issue_id'), ['package_issue_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_client_keys_package_issue_id_package_issues'), 'package_issues', ['package_issue_id'], ['id'], ondelete='SET NULL')
    _link_past_packages()


def _link_past_packages():
    import json

    bind = op.get_bind()
    entries = bind.execute(sa.text("SELECT client_id, after FROM audit_entries WHERE action = 'package.issue'")).all()
    for client_id, after in entries:
        after = json.loads(after) if isinstance(after, str) else (after or {})
        prefix, package_id = after.get("key_prefix"), after.get("package_id")
        if not prefix or not package_id:
            continue
        issue_id = bind.execute(sa.text("SELECT id FROM package_issues WHERE client_id = :c AND "
                                        "CAST(package_id AS VARCHAR(64)) IN (:p, :h)"),
                                {"c": client_id, "p": package_id, "h": package_id.replace("-", "")}).scalar()
        if issue_id is not None:
            bind.execute(sa.text("UPDATE client_keys SET package_issue_id = :i WHERE client_id = :c AND "
                                 "key_prefix = :k AND package_issue_id IS NULL"),
                         {"i": issue_id, "c": client_id, "k": prefix})


def downgrade():
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_client_keys_package_issue_id_package_issues'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_client_keys_package_issue_id'))
        batch_op.drop_column('revoked_by')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('package_issue_id')
