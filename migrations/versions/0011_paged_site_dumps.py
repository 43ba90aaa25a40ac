"""devices remember the records they are still owed of a site gained or a migrated table

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 21:30:00

A site granted to an inspector (or joining a manager's region) and a table a WatermelonDB schema
migration asks for were sent whole in one answer, however big, past the pull's page limit. They
now go in pages: the device's bookkeeping keeps what is left to send and how far it got
(sync/dumps.py, as JSON).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dump", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_states", schema=None) as batch_op:
        batch_op.drop_column("dump")
