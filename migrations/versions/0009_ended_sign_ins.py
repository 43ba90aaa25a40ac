"""an index of ended sign-ins

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 14:10:00

Every request now asks whether its access token's sign-in (a refresh token family) has ended:
does the family hold a revoked token? The family index alone makes that a walk over every token
of the sign-in (one per refresh, about 2,900 in 30 days of 15-minute tokens); an index of the
revoked tokens alone answers it at once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_REVOKED = sa.text("revoked_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_refresh_tokens_family_revoked",
        "refresh_tokens",
        ["family"],
        postgresql_where=_REVOKED,
        sqlite_where=_REVOKED,
    )


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_family_revoked", table_name="refresh_tokens")
