"""SQLite: times the database filled in itself get SQLAlchemy's fraction of a second

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 22:30:00

The synced tables' created_at and updated_at used to be filled by the database's default,
which SQLite writes as '2026-06-01 00:00:00', where SQLAlchemy writes and binds
'2026-06-01 00:00:00.000000'. SQLite compares times as text, so a row made in the very second
a period starts sorted before that period's bound and was counted in the period before
(reports filter actions by created_at). The app now sets these times itself; this rewrites the
stored ones: a value of exactly that shape gains '.000000', the same instant. Other values are
left as they are, so running it again changes nothing. PostgreSQL stores timestamptz and has
nothing to rewrite.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Self-contained (no application imports): the time columns are found by reflection.
# 'YYYY-MM-DD HH:MM:SS' and nothing more: SQLite's CURRENT_TIMESTAMP.
WHOLE_SECOND = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    inspector = sa.inspect(conn)
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], sa.DateTime):
                # Untyped: the text itself is rewritten, as text.
                stored = sa.table(table, sa.column(column["name"])).c[column["name"]]
                conn.execute(
                    sa.update(stored.table)
                    .where(stored.op("GLOB")(WHOLE_SECOND))
                    .values({stored.name: stored.concat(".000000")})
                )


def downgrade() -> None:
    """Nothing to undo: the same instants, in the form the app reads and writes."""
