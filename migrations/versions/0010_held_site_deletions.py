"""devices remember the sites whose deletions they are owed

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 18:00:00

When an inspector loses a site (assignment revoked, or the site closed) the site's records leave
their devices as deletions. WatermelonDB pulls before it pushes and destroys a deleted record even
when it holds local changes, so the edits made there offline were lost unseen. The deletions now
wait until the device has pushed (or one more sync has gone by): it remembers the sites held back,
the cursor of the pull that held them, and whether they may go (sync/holds.py, as JSON).

A regional manager's devices remember the sites they pulled (`reach`): a site moving between
regions, or a new site, reaches them as a grant or a loss, instead of a replacement that would
destroy their offline edits at a site that left.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reach", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_states", schema=None) as batch_op:
        batch_op.drop_column("reach")
        batch_op.drop_column("held")
