"""Batch inserts on PostgreSQL go through a temporary staging table moved into place by the
stamp; a rolled-back first use must not leave the connection believing the table exists."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from store.models import Response
from sync import revs, writer
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="staging is PostgreSQL's bulk path; SQLite inserts directly",
)


def _insert(session, prefix: str) -> None:
    """A batch of planned rows through the writer's bulk path, with pending revs."""
    table = Response.__table__
    rev = revs.next_pending(session, table, writer.COPY_MIN_ROWS, staged=True)
    rows = [
        {
            "id": f"{prefix}{n:04d}",
            "inspection_id": "i",
            "item_key": f"k{n}",
            "value": '"yes"',
            "site_id": "s",
        }
        for n in range(writer.COPY_MIN_ROWS)
    ]
    writer.insert_rows(session, table, rows, rev)


def test_staged_rows_reach_the_table_after_a_rolled_back_first_use(app, db):
    engine = app.extensions["db_engine"]
    with engine.connect() as conn:  # one database connection for both transactions
        first = app.extensions["db_sessions"](bind=conn)
        _insert(first, "lost")
        first.rollback()  # takes the just-created staging table with it
        first.close()
        second = app.extensions["db_sessions"](bind=conn)
        _insert(second, "kept")
        top = revs.stamp(second)
        second.commit()
    stored = db.execute(select(Response.id, Response.server_rev)).all()
    assert sorted(i for i, _ in stored) == [f"kept{n:04d}" for n in range(writer.COPY_MIN_ROWS)]
    assert all(0 < r <= top for _, r in stored)


def test_a_commit_without_the_stamp_is_refused(app):
    session = app.extensions["db_sessions"]()
    try:
        _insert(session, "nostamp")
        with pytest.raises(RuntimeError, match="not stamped"):
            session.commit()
    finally:
        session.rollback()
        session.close()
