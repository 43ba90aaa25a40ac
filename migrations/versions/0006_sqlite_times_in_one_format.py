"""SQLite: times a big sync push stored with a zone suffix are rewritten in SQLAlchemy's format

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 20:00:00

Before the fix of sync/writer.py's SQLite batch insert, rows of batches of 50+ stored their
times as str(datetime), '2026-02-28 00:00:00+00:00', where SQLAlchemy stores
'2026-02-28 00:00:00.000000'. SQLite compares times as text, so such rows fell on the wrong
side of period bounds (reports, purges). Every time column's values with a zone suffix become
the UTC instant in SQLAlchemy's format; other values are left as they are. PostgreSQL stores
timestamptz and has nothing to rewrite.
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Self-contained (no application imports): the time columns are found by reflection.
# Text ending in a zone: '+00:00', any other offset (with seconds too, as str(datetime) writes
# them) or 'Z'. SQLAlchemy's own values end in microseconds and match none of these.
ZONE_SUFFIXES = (
    "*[+-][0-9][0-9]:[0-9][0-9]",
    "*[+-][0-9][0-9]:[0-9][0-9]:[0-9][0-9]*",
    "*Z",
)
BATCH = 5000


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    inspector = sa.inspect(conn)
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], sa.DateTime):
                _rewrite(conn, table, column["name"])


def downgrade() -> None:
    """Nothing to undo: the old form was a bug."""


def _rewrite(conn: sa.Connection, table: str, column: str) -> None:
    """One column's zoned values as SQLAlchemy stores them, a batch of rows at a time."""
    # Read as plain text (untyped); written through DateTime, so SQLAlchemy formats the value.
    raw = sa.table(table, sa.column("rowid"), sa.column(column))
    typed = sa.table(table, sa.column("rowid"), sa.column(column, sa.DateTime()))
    zoned = sa.or_(*(raw.c[column].op("GLOB")(p) for p in ZONE_SUFFIXES))
    fix = (
        sa.update(typed)
        .where(typed.c.rowid == sa.bindparam("fixed_rowid"))
        .values({column: sa.bindparam("fixed_value")})
    )
    after = -(2**63)
    while True:
        # Keyset over rowid: a full scan per column at most, and no row is read twice.
        rows = conn.execute(
            sa.select(raw.c.rowid, raw.c[column])
            .where(raw.c.rowid > after, zoned)
            .order_by(raw.c.rowid)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        fixed = [
            {"fixed_rowid": rowid, "fixed_value": when}
            for rowid, text in rows
            if (when := _utc(text)) is not None
        ]
        if fixed:
            conn.execute(fix, fixed)


def _utc(text: str) -> dt.datetime | None:
    """The naive UTC instant of an ISO time with an offset; None for anything else."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None  # not a time this migration knows how to read: left as it is
    if value.tzinfo is None:
        return None
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        # Year 1 with a positive offset (or 9999 with a negative one) has no UTC datetime: the
        # nearest representable instant, as store/types.py UTCDateTime binds it.
        return dt.datetime.min if value.year == 1 else dt.datetime.max
