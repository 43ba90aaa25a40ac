"""devices remember the cursor they were handed mid-pull and the scope they pulled in

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00

A cursor older than purged tombstones gets a replacement; but the cursor handed out with
has_more is usually that old too during a first sync, and must continue the pull instead of
starting it again. And when a user's role or region changes, their devices get a replacement
in the new scope.
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('device_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resume_rev', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('scope_key', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('device_states', schema=None) as batch_op:
        batch_op.drop_column('scope_key')
        batch_op.drop_column('resume_rev')
