"""The bulk insert path stores values exactly as SQLAlchemy's own insert would: on SQLite,
times are text, and text in two formats compares wrongly (a report's period bounds)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, text

from store.models import Response
from sync import revs, writer


def _row(rid: str, when: dt.datetime) -> dict:
    return {
        "id": rid,
        "inspection_id": "i",
        "item_key": rid,
        "value": '"yes"',
        "site_id": "s",
        "failed": True,
        "item_score": 1.0,
        "deleted_at": when,
    }


def test_a_batch_stores_times_as_a_single_insert_does(app, db):
    table = Response.__table__
    when = dt.datetime(2026, 2, 28, 0, 0, tzinfo=dt.UTC)
    session = app.extensions["db_sessions"]()
    try:
        batch = [_row(f"bulk{n:03d}", when) for n in range(writer.COPY_MIN_ROWS)]
        staged = writer.is_staged(session, len(batch))
        writer.insert_rows(
            session, table, batch, revs.next_pending(session, table, len(batch), staged=staged)
        )
        single = {**writer.defaults_for(table), **_row("single", when)}
        single["server_rev"] = revs.next_pending(session, table)
        session.execute(insert(table), [single])
        revs.stamp(session)
        session.commit()
    finally:
        session.close()
    stored = db.execute(
        text("SELECT id, CAST(deleted_at AS TEXT), failed, item_score FROM responses")
    ).all()
    assert len(stored) == writer.COPY_MIN_ROWS + 1
    reference = next(r[1:] for r in stored if r[0] == "single")
    assert {r[1:] for r in stored} == {reference}
