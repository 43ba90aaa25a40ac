"""Pull: the changes a device has not seen, in its scope, paged by rev from one snapshot."""

from __future__ import annotations

import datetime as dt
import heapq
from typing import Any

import orjson
from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from store.enums import INSPECTOR
from store.errors import Invalid
from store.models import Conflict, SiteAssignment, SyncCounter
from store.types import UTCDateTime
from sync.scope import Scope
from sync.tables import TABLES, TableSpec

# Tables whose rows hang off a site through a site_id column (templates are for everyone).
_SITE_COLUMN = {
    "sites": "id",
    "occurrences": "site_id",
    "inspections": "site_id",
    "responses": "site_id",
    "attachments": "site_id",
    "actions": "site_id",
}


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def _serialiser(spec: TableSpec):
    """A fast row -> wire dict function for one table."""
    names = ("id", "server_rev", *spec.wire_columns)
    json_cols = {c for c, col in spec.columns.items() if col.kind == "json"}
    time_cols = {c for c, col in spec.columns.items() if col.kind == "ms"}
    dt_cols = {c for c in time_cols if isinstance(spec.table.c[c].type, UTCDateTime)}

    def convert(row: Any) -> dict[str, Any]:
        out = dict(zip(names, row, strict=False))
        for c in json_cols:
            if out[c] is not None:
                out[c] = orjson.dumps(out[c]).decode()
        for c in dt_cols:
            if isinstance(out[c], dt.datetime):
                out[c] = _ms(out[c])
        return out

    return names, convert


_SERIALISERS = {name: _serialiser(spec) for name, spec in TABLES.items()}


def _scoped(spec: TableSpec, stmt: Select, scope: Scope, sites: frozenset[str] | None) -> Select:
    column = _SITE_COLUMN.get(spec.name)
    if column is None:
        return stmt
    if sites is not None:
        return stmt.where(spec.table.c[column].in_(sorted(sites)))
    return stmt.where(scope.site_clause(spec.table.c[column]))


def _select(spec: TableSpec) -> Select:
    table = spec.table
    names, _ = _SERIALISERS[spec.name]
    return select(*(table.c[n] for n in names), table.c.deleted_at)


class PullRequest:
    """Validated pull parameters."""

    def __init__(self, cursor: int | None, limit: int, migration: dict | None) -> None:
        self.cursor = cursor
        self.limit = limit
        self.migration = migration


def parse_migration(raw: Any) -> dict | None:
    """WatermelonDB's migration sync: {from, tables, columns: [{table, columns}]}."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Invalid("'migration' must be JSON.", errors={"migration": ["not JSON"]}) from None
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("tables", []), list)
        or not isinstance(raw.get("columns", []), list)
    ):
        raise Invalid(
            "'migration' must be {from, tables: [...], columns: [{table, columns}]}.",
            errors={"migration": ["wrong shape"]},
        )
    tables = {t for t in raw.get("tables", []) if t in TABLES}
    for entry in raw.get("columns", []):
        if isinstance(entry, dict) and entry.get("table") in TABLES:
            tables.add(entry["table"])
    return {"tables": sorted(tables)}


def pull(session: Session, scope: Scope, req: PullRequest) -> dict[str, Any]:
    """One page of changes; the caller runs it in a snapshot (REPEATABLE READ) transaction."""
    top, purged = session.execute(
        select(SyncCounter.value, SyncCounter.purged_rev).where(SyncCounter.id == 1)
    ).one()
    cursor = req.cursor
    replacement = cursor is not None and cursor > 0 and cursor < purged
    first = cursor is None or cursor <= 0 or replacement
    low = -1 if first else cursor
    changes: dict[str, dict[str, list]] = {
        n: {"created": [], "updated": [], "deleted": []} for n in TABLES
    }

    # Merge the tables' change streams by rev and cut one page.
    streams = []
    for name, spec in TABLES.items():
        stmt = _select(spec).where(spec.table.c.server_rev > low, spec.table.c.server_rev <= top)
        if first:
            stmt = stmt.where(spec.table.c.deleted_at.is_(None))
        stmt = _scoped(spec, stmt, scope, None).order_by(spec.table.c.server_rev)
        rows = session.execute(stmt.limit(req.limit + 1)).all()
        streams.append([(row[1], name, row) for row in rows])
    merged = list(heapq.merge(*streams, key=lambda item: item[0]))
    page, has_more = merged[: req.limit], len(merged) > req.limit
    end = page[-1][0] if has_more else top
    for _rev, name, row in page:
        _, convert = _SERIALISERS[name]
        if row[-1] is not None:
            changes[name]["deleted"].append(row[0])
        else:
            changes[name]["updated"].append(convert(row[:-1]))

    if not first:
        _scope_changes(session, scope, changes, low, end)
    if req.migration:
        for name in req.migration["tables"]:
            _dump_tables(session, scope, changes, [name], None, end)
    result: dict[str, Any] = {"changes": changes, "timestamp": end, "has_more": has_more}
    if replacement:
        result["experimentalStrategy"] = "replacement"
    return result


def _dump_tables(
    session: Session,
    scope: Scope,
    changes: dict,
    names: list[str],
    sites: frozenset[str] | None,
    end: int,
) -> None:
    """Add every live record of these tables (in scope, or of `sites`) as updated."""
    for name in names:
        spec = TABLES[name]
        if sites is not None and name not in _SITE_COLUMN:
            continue
        stmt = _select(spec).where(
            spec.table.c.deleted_at.is_(None), spec.table.c.server_rev <= end
        )
        stmt = _scoped(spec, stmt, scope, sites)
        seen = {r["id"] for r in changes[name]["updated"]}
        _, convert = _SERIALISERS[name]
        for row in session.execute(stmt):
            if row[0] not in seen:
                changes[name]["updated"].append(convert(row[:-1]))


def _scope_changes(session: Session, scope: Scope, changes: dict, low: int, end: int) -> None:
    """Access granted since the cursor: send the site's records; revoked: send deletions."""
    if scope.role == INSPECTOR:
        rows = session.execute(
            select(SiteAssignment.site_id, SiteAssignment.revoked_at).where(
                SiteAssignment.user_id == scope.user_id,
                SiteAssignment.server_rev > low,
                SiteAssignment.server_rev <= end,
            )
        ).all()
        granted = frozenset(s for s, revoked in rows if revoked is None and scope.sees_site(s))
        revoked = frozenset(s for s, r in rows if r is not None and not scope.sees_site(s))
        if granted:
            _dump_tables(session, scope, changes, list(_SITE_COLUMN), granted, end)
        if revoked:
            for name, column in _SITE_COLUMN.items():
                table = TABLES[name].table
                ids = session.execute(
                    select(table.c.id).where(table.c[column].in_(sorted(revoked)))
                ).scalars()
                changes[name]["deleted"].extend(ids)
    # Records this user pushed outside their scope: the device should drop them.
    refused = session.execute(
        select(Conflict.table_name, Conflict.record_id).where(
            and_(
                Conflict.user_id == scope.user_id,
                Conflict.kind == "out_of_scope",
                Conflict.server_rev > low,
                Conflict.server_rev <= end,
            )
        )
    ).all()
    for table_name, record_id in refused:
        spec = TABLES.get(table_name)
        if spec is None or any(r["id"] == record_id for r in changes[table_name]["updated"]):
            continue
        stmt = _scoped(
            spec,
            _select(spec).where(spec.table.c.id == record_id, spec.table.c.deleted_at.is_(None)),
            scope,
            None,
        )
        row = session.execute(stmt).first()
        if row is None:
            changes[table_name]["deleted"].append(record_id)
        else:
            # Visible but not theirs to change: send the server's copy so the device reverts.
            changes[table_name]["updated"].append(_SERIALISERS[table_name][1](row[:-1]))
