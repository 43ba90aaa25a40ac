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


def _write(app, table, batch: list[dict], singles: list[dict]) -> None:
    """Commit `batch` through the batch insert and `singles` one SQLAlchemy insert each."""
    session = app.extensions["db_sessions"]()
    try:
        staged = writer.is_staged(session, len(batch))
        rev = revs.next_pending(session, table, len(batch), staged=staged)
        writer.insert_rows(session, table, batch, rev)
        for row in singles:
            single = {**writer.defaults_for(table), **row}
            single["server_rev"] = revs.next_pending(session, table)
            session.execute(insert(table), [single])
        revs.stamp(session)
        session.commit()
    finally:
        session.close()


def test_a_batch_stores_times_as_a_single_insert_does(app, db):
    table = Response.__table__
    when = dt.datetime(2026, 2, 28, 0, 0, tzinfo=dt.UTC)
    batch = [_row(f"bulk{n:03d}", when) for n in range(writer.COPY_MIN_ROWS)]
    _write(app, table, batch, [_row("single", when)])
    stored = db.execute(
        text("SELECT id, CAST(deleted_at AS TEXT), failed, item_score FROM responses")
    ).all()
    assert len(stored) == writer.COPY_MIN_ROWS + 1
    reference = next(r[1:] for r in stored if r[0] == "single")
    assert {r[1:] for r in stored} == {reference}


def test_a_batch_of_rows_with_different_columns_stores_each_as_a_single_insert_does(app, db):
    table = Response.__table__
    first = dt.datetime(2026, 2, 28, 0, 0, tzinfo=dt.UTC)
    rows = []
    for n in range(writer.COPY_MIN_ROWS + 10):
        row = _row(f"bulk{n:03d}", first + dt.timedelta(hours=n % 3) if n % 4 else None)
        if n % 5 == 0:
            del row["value"]  # left to the default
        if n % 7 == 0:
            row["col_revs"] = {"value": [n, "dev"]}
        row["failed"] = n % 2 == 0
        rows.append(row)
    _write(app, table, rows, [{**row, "id": "one" + row["id"]} for row in rows])
    stored = {
        r[0]: r[1:]
        for r in db.execute(
            text(
                "SELECT id, CAST(deleted_at AS TEXT), failed, item_score, value, "
                "CAST(col_revs AS TEXT) FROM responses"
            )
        )
    }
    assert len(stored) == 2 * len(rows)
    for row in rows:
        # JSON columns aside: a PostgreSQL batch stores a missing document as NULL, a single
        # insert as JSON null; both read back as None.
        assert stored[row["id"]][:4] == stored["one" + row["id"]][:4]
    assert "dev" in stored["bulk007"][4] and "dev" in stored["onebulk007"][4]
    assert stored["bulk001"][0] is not None and stored["bulk004"][0] is None


def test_columns_no_row_of_a_batch_fills_are_stored_as_a_single_insert_stores_them(app, db):
    # The batch leaves out the columns no row fills (note, deleted_at, the scores): they must
    # still read back exactly as a single insert of the same row leaves them.
    table = Response.__table__
    rows = [
        {"id": f"bulk{n:03d}", "inspection_id": "i", "item_key": f"k{n}", "value": '"yes"'}
        for n in range(writer.COPY_MIN_ROWS)
    ]
    _write(app, table, rows, [{**rows[0], "id": "single"}])
    columns = "note, CAST(deleted_at AS TEXT), failed, item_score, site_id, answered_at, value"
    stored = {r[0]: r[1:] for r in db.execute(text(f"SELECT id, {columns} FROM responses")).all()}
    assert len(stored) == writer.COPY_MIN_ROWS + 1
    assert stored["single"] == (None, None, None, None, None, None, '"yes"')
    assert {v for k, v in stored.items() if k != "single"} == {stored["single"]}
