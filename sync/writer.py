"""Write a ChangeSet: bulk INSERTs and UPDATEs of the differences, with pending revs."""

from __future__ import annotations

from collections import defaultdict
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from store import rollups
from store.changeset import ChangeSet, Row
from store.db import is_postgres, one_of
from store.models import AuditEvent, Conflict
from store.types import new_id, utcnow
from sync.revs import next_pending, stage, updated_col_revs
from sync.tables import TABLES

# Bookkeeping columns: never counted as a change of the record itself.
_BOOKKEEPING = frozenset({"id", "server_rev", "col_revs", "created_at", "updated_at"})
# Times every synced row carries, which a batch insert sets itself.
_TIMES = ("created_at", "updated_at")


def _defaults(table: Table) -> dict[str, Any]:
    """Column defaults for a full-width insert row (executemany needs uniform keys); columns
    the database fills itself (server defaults) are left out."""
    out: dict[str, Any] = {}
    for col in table.columns:
        if col.server_default is not None:
            continue
        default = col.default
        out[col.name] = default.arg if default is not None and default.is_scalar else None
    return out


_DEFAULTS: dict[str, dict[str, Any]] = {}

# The order tables are written in, whatever order the plan brought them in: the order every
# writer locks rows in (parents first, a photo after the action it documents). An UPDATE
# locks rows the plan read without locking (the children a deletion takes with it), so
# writing them in another order deadlocks with a writer holding them the documented way.
WRITE_ORDER = ("inspections", "responses", "actions", "attachments")


def _write_rank(name: str) -> int:
    return WRITE_ORDER.index(name) if name in WRITE_ORDER else len(WRITE_ORDER)


def defaults_for(table: Table) -> dict[str, Any]:
    """Cached defaults of a table."""
    if table.name not in _DEFAULTS:
        _DEFAULTS[table.name] = _defaults(table)
    return _DEFAULTS[table.name]


def load_rows(
    session: Session, table: Table, column: str, values: list[str], lock: bool = False
) -> list[Row]:
    """Full rows whose `column` is one of `values`, in chunks; optionally locked FOR UPDATE."""
    out: list[Row] = []
    col = table.c[column]
    for start in range(0, len(values), 5000):
        chunk = values[start : start + 5000]
        stmt = select(table).where(one_of(session, col, chunk))
        if lock:
            # Locked in id order (the sort runs below the row locking): two writers locking
            # overlapping rows cannot each hold what the other waits for.
            stmt = stmt.order_by(table.c.id).with_for_update()
        out.extend(dict(r) for r in session.execute(stmt).mappings())
    return out


COPY_MIN_ROWS = 50


def is_staged(session: Session, count: int) -> bool:
    """Whether insert_rows sends a batch of `count` rows to the table's staging copy (a
    PostgreSQL batch)."""
    return count >= COPY_MIN_ROWS and is_postgres(session)


def insert_rows(session: Session, table: Table, rows: list[Row], first_rev: int) -> None:
    """Insert planned rows, the table's defaults filling the columns they leave out, with
    server_revs counting down from `first_rev`; the rows themselves are not changed. One
    executemany; for a batch, the driver's own on SQLite, and on PostgreSQL a COPY into the
    table's staging copy, moved into place when the revs are stamped (so each row is written
    once, not inserted then rewritten). Staged rows are not visible to this transaction before
    it commits; the batch writers (sync pushes) read nothing back."""
    if len(rows) >= COPY_MIN_ROWS and not is_postgres(session):
        _insert_sqlite(session, table, rows, first_rev)
        return
    defaults = defaults_for(table)
    full = []
    rev = first_rev
    for row in rows:
        full.append({**defaults, **row, "server_rev": rev})
        rev -= 1
    if len(full) < COPY_MIN_ROWS:
        session.execute(insert(table), full)
        return
    from psycopg import sql
    from psycopg.types.json import Json

    columns = [c for c in full[0] if any(r[c] is not None for r in full)]
    json_cols = {c for c in columns if isinstance(table.c[c].type, JSON)}
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(stage(session, table)), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    session.flush()
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in full:
            copy.write_row(
                [Json(row[c]) if c in json_cols and row[c] is not None else row[c] for c in columns]
            )


def _insert_sqlite(session: Session, table: Table, rows: list[Row], first_rev: int) -> None:
    """A batch through the driver's own executemany: SQLAlchemy's per-row parameter handling
    costs more than SQLite's insert. The values are gathered a column at a time (cheaper than
    a merged dict and a list per row) and converted by the columns' own bind processors, so
    they are stored exactly as SQLAlchemy would store them."""
    # The rows' times, set here as SQLAlchemy would: SQLite's own default has no fraction of a
    # second, and sorts before period bounds of that very second. One value, converted once.
    now = utcnow()
    defaults = defaults_for(table) | {c: now for c in _TIMES if c in table.c}
    keys = set().union(*rows)
    present = keys | defaults.keys()
    # Rows planned alike carry the same keys (each has them all): then a column is one pass.
    uniform = len(set(map(len, rows))) == 1 and len(keys) == len(rows[0])
    columns = [c.name for c in table.columns if c.name in present and c.name != "server_rev"]
    dialect = session.get_bind().dialect
    count = len(rows)
    kept, data = [], []
    for name in columns:
        col = table.c[name]
        # The dialect's own type: the generic one's processor skips SQLite's formatting of
        # times, which then land as text in another format than SQLAlchemy's and compare
        # wrongly against it.
        process = col.type.dialect_impl(dialect).bind_processor(dialect)
        if uniform and name not in keys:
            # A default every row takes: converted once.
            value = defaults.get(name)
            value = value if process is None else process(value)
            if value is None and col.server_default is None:
                continue  # left to its NULL default rather than bound 3,000 times
            kept.append(name)
            data.append([value] * count)
            continue
        if uniform:
            values = list(map(itemgetter(name), rows))
        else:
            values = [row.get(name, defaults.get(name)) for row in rows]
        values = values if process is None else _processed(process, values)
        # A column no row fills (a new answer's note) is left to its NULL default too; not
        # when the column has a default of its own, or when NULL is what its type made of
        # nothing (a JSON column's 'null').
        if col.server_default is None and values[0] is None and values.count(None) == count:
            continue
        kept.append(name)
        data.append(values)
    columns = [*kept, "server_rev"]
    data.append(range(first_rev, first_rev - count, -1))
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    # In the plan's order: sorting a batch by id first, so the primary key's index is walked
    # from left to right, saved nothing measurable even in a table of a million answers, and
    # cost a 3,000-row push about a millisecond.
    values = zip(*data, strict=True)
    session.flush()
    raw = session.connection().connection.driver_connection
    raw.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', values)


_NUMBERS = frozenset({bool, int, float})


def _processed(process: Any, values: list[Any]) -> list[Any]:
    """Values through a bind processor, once per distinct value where they can be told apart
    (a batch's times and flags repeat; JSON documents cannot be hashed and go one by one)."""
    try:
        distinct = dict.fromkeys(values)
    except TypeError:
        return [process(v) for v in values]
    if len(distinct) == len(values) or len({type(v) for v in distinct} & _NUMBERS) > 1:
        # Every value differs, or numbers of several types merged (True == 1 == 1.0).
        return [process(v) for v in values]
    for value in distinct:
        distinct[value] = process(value)
    return list(map(distinct.__getitem__, values))


def write(session: Session, cs: ChangeSet) -> int:
    """Persist the plan; returns the number of rows written."""
    now = utcnow()
    written = 0
    # A stable sort: other tables (occurrences) follow, in the plan's order.
    for name, rows in sorted(cs.after.items(), key=lambda item: _write_rank(item[0])):
        spec = TABLES[name]
        table = spec.table
        before_rows = cs.before.get(name, {})
        bumps = cs.bumps.get(name, set())
        # All new (a big push's thousands of records): no stored row to compare them with.
        all_new = list(map(before_rows.get, rows)).count(None) == len(rows)
        inserts: list[Row] = list(rows.values()) if all_new else []
        updates: dict[frozenset[str], list[Row]] = defaultdict(list)
        for rid, after in ({} if all_new else rows).items():
            before = before_rows.get(rid)
            if before is None:
                inserts.append(after)
                continue
            changed = [k for k, v in after.items() if k not in _BOOKKEEPING and before.get(k) != v]
            if not changed and rid not in bumps:
                continue
            values = {c: after[c] for c in changed}
            values["col_revs"] = updated_col_revs(
                before.get("col_revs"), before["server_rev"], changed, cs.device_id
            )
            values["updated_at"] = now
            values["_id"] = rid
            updates[frozenset(values)].append(values)
        count = len(inserts) + sum(len(v) for v in updates.values())
        if not count:
            continue
        staged = not updates and is_staged(session, len(inserts))
        rev = next_pending(session, table, count, staged=staged)
        first_insert_rev = rev
        rev -= len(inserts)
        for group in updates.values():
            for row in group:
                row["server_rev"] = rev
                rev -= 1
        if name == "inspections":
            # Before the statements: the rollups read the rows they are about to replace.
            rollups.record_writes(
                session, inserts, {row["_id"]: row for group in updates.values() for row in group}
            )
        if inserts:
            insert_rows(session, table, inserts, first_insert_rev)
        if len(updates) > 1 and is_postgres(session):
            # Rows the plan read without locking (rules' context: occurrences, children) are
            # locked by their UPDATE: in id order, as every writer locks rows, not in the
            # plan's order; one statement per column set would otherwise interleave them.
            ids = sorted(row["_id"] for group in updates.values() for row in group)
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                lock = select(table.c.id).where(one_of(session, table.c.id, chunk))
                session.execute(lock.order_by(table.c.id).with_for_update())
        for cols, group in updates.items():
            group.sort(key=lambda row: row["_id"])
            stmt = (
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values(
                    {c: bindparam(c) for c in cols if c != "_id"}
                    | {"server_rev": bindparam("server_rev")}
                )
            )
            session.execute(stmt, group, execution_options={"synchronize_session": False})
        written += count
    _write_conflicts(session, cs)
    _write_audit(session, cs, now)
    return written


def _write_conflicts(session: Session, cs: ChangeSet) -> None:
    if not cs.conflicts:
        return
    table = Conflict.__table__
    rev = next_pending(session, table, len(cs.conflicts))
    rows = []
    for note in cs.conflicts:
        rows.append(
            {
                **defaults_for(table),
                "id": new_id(),
                "kind": note.kind,
                "table_name": note.table,
                "record_id": note.record_id,
                "inspection_id": note.inspection_id,
                "site_id": note.site_id,
                "column": note.column,
                "server_value": note.server_value,
                "device_value": note.device_value,
                "detail": note.detail,
                "user_id": cs.user_id,
                "device_id": cs.device_id,
                "created_at": utcnow(),
                "server_rev": rev,
            }
        )
        rev -= 1
    session.execute(insert(table), rows)


def _write_audit(session: Session, cs: ChangeSet, now: Any) -> None:
    if not cs.audit:
        return
    session.execute(
        insert(AuditEvent.__table__),
        [
            {
                "at": now,
                "actor_id": cs.user_id,
                "device_id": cs.device_id,
                "entity": a.entity,
                "entity_id": a.entity_id,
                "inspection_id": a.inspection_id,
                "action": a.action,
                "changes": a.changes,
            }
            for a in cs.audit
        ],
    )
