"""remote package content moves to the content store (CONTENT_DIR); rows keep its version

Revision ID: 3982d3aedb1e
Revises: 36912346a5a2
Create Date: 2026-12-01 22:46:08.697250

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '3982d3aedb1e'
down_revision = '36912346a5a2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('remote_contents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_version', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('content_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('sco_count', sa.Integer(), nullable=True))
    _move_contents_to_the_store()
    with op.batch_alter_table('remote_contents', schema=None) as batch_op:
        batch_op.alter_column('content_version', nullable=False)
        batch_op.alter_column('content_bytes', nullable=False)
        batch_op.alter_column('sco_count', nullable=False)
        batch_op.drop_column('content')


def _move_contents_to_the_store():
    """Each stored course zip becomes a version in the content store (CONTENT_DIR), as a republish would."""
    import io
    import zipfile

    from flask import current_app

    from app.content.store import DirectoryStore
    from app.packages.remote import REMOTE_API_FILE
    from app.packages.tracker import TRACKER_FILE, inject_tracker

    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, package_id, launch_file, content FROM remote_contents")).all()
    if not rows:
        return
    store = DirectoryStore(current_app.config["CONTENT_DIR"])
    for row_id, package_id, launch_file, blob in rows:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            def opener(name, archive=archive):
                body = archive.read(name)
                if name == launch_file:
                    body = inject_tracker(body, name, (REMOTE_API_FILE, TRACKER_FILE))
                return lambda: io.BytesIO(body)

            names = [n for n in archive.namelist() if not n.endswith("/")]
            package = str(package_id if not isinstance(package_id, bytes) else package_id.hex())
            package = package if "-" in package else f"{package[:8]}-{package[8:12]}-{package[12:16]}-" \
                                                     f"{package[16:20]}-{package[20:]}"
            version = store.put_version({"package": package, "scos": [{"title": launch_file, "href": launch_file}]},
                                        ((n, opener(n)) for n in names))
            size = sum(archive.getinfo(n).file_size for n in names)
        connection.execute(sa.text("UPDATE remote_contents SET content_version = :v, content_bytes = :b, "
                                   "sco_count = 1 WHERE id = :id"), {"v": version, "b": size, "id": row_id})


def downgrade():
    # The content store keeps the files; a downgrade cannot put them back into rows.
    with op.batch_alter_table('remote_contents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
        batch_op.drop_column('sco_count')
        batch_op.drop_column('content_bytes')
        batch_op.drop_column('content_version')
