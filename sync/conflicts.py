"""Conflict records: listing for reviewers, and resolution through the same rev machinery."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from store.changeset import AuditNote, ChangeSet
from store.errors import Invalid, NotFound
from store.models import Conflict
from store.types import utcnow
from sync import writer
from sync.push import Rules
from sync.scope import Scope
from sync.tables import TABLES

RESOLUTIONS = ("keep_server", "take_device", "edit")


def _visible(scope: Scope) -> Any:
    """Conflicts with no site (unplaceable records) are HQ's to look at."""
    if scope.is_hq:
        return None
    return scope.site_clause(Conflict.site_id)


def query(scope: Scope, filters: dict[str, Any]) -> Select:
    """Conflicts in scope, newest first, filtered."""
    scope.require_role("regional_manager", "hq")
    stmt = select(Conflict)
    clause = _visible(scope)
    if clause is not None:
        stmt = stmt.where(clause)
    for key in ("site_id", "inspection_id", "kind", "record_id"):
        if filters.get(key):
            stmt = stmt.where(getattr(Conflict, key) == filters[key])
    if filters.get("resolved") is not None:
        stmt = stmt.where(
            Conflict.resolved_at.is_not(None)
            if filters["resolved"]
            else Conflict.resolved_at.is_(None)
        )
    return stmt.order_by(Conflict.created_at.desc(), Conflict.id)


def get(session: Session, scope: Scope, conflict_id: str) -> Conflict:
    """One conflict in scope (404 otherwise)."""
    scope.require_role("regional_manager", "hq")
    row = session.get(Conflict, conflict_id)
    if row is None or not (scope.is_hq or scope.sees_site(row.site_id)):
        raise NotFound("No conflict with that id.")
    return row


def current_record(session: Session, conflict: Conflict) -> dict[str, Any] | None:
    """The record as it is now (None when it does not exist on the server)."""
    spec = TABLES.get(conflict.table_name)
    if spec is None:
        return None
    rows = writer.load_rows(session, spec.table, "id", [conflict.record_id])
    return rows[0] if rows else None


def _values(conflict: Conflict, resolution: str, value: Any) -> dict[str, Any]:
    """The column values a resolution writes."""
    source = conflict.device_value if resolution == "take_device" else value
    spec = TABLES[conflict.table_name]
    if conflict.column:
        if conflict.column not in spec.writable:
            raise Invalid(
                f"Column {conflict.column} cannot be set by a resolution.", reason="not_resolvable"
            )
        return {conflict.column: source}
    if not isinstance(source, dict):
        raise Invalid(
            "This conflict holds a whole record: 'value' must be an object of columns.",
            errors={"value": ["must be an object"]},
        )
    out = {k: v for k, v in source.items() if k in spec.writable}
    unknown = (
        set(source)
        - set(out)
        - {"id", "_status", "_changed", "base_rev", "server_rev", "_deleted"}
        - spec.server_owned
    )
    if unknown and resolution == "edit":
        raise Invalid(
            f"Unknown or read-only columns: {', '.join(sorted(unknown))}.",
            errors={"value": [f"unknown columns {sorted(unknown)}"]},
        )
    return out


def resolve(
    session: Session,
    scope: Scope,
    conflict_id: str,
    resolution: str,
    value: Any,
    rules: Rules | None,
    device_id: str | None = None,
) -> Conflict:
    """Keep the server's value, take the device's, or write an edited value; devices converge
    on their next pull because the record's rev moves."""
    conflict = get(session, scope, conflict_id)
    if conflict.resolved_at is not None:
        raise Invalid("This conflict is already resolved.", reason="already_resolved")
    if resolution not in RESOLUTIONS:
        raise Invalid(
            "Resolution must be keep_server, take_device or edit.",
            errors={"resolution": [f"one of {', '.join(RESOLUTIONS)}"]},
        )
    conflict.resolved_at = utcnow()
    conflict.resolved_by = scope.user_id
    conflict.resolution = resolution
    session.flush()
    cs = ChangeSet(
        user_id=scope.user_id,
        role=scope.role,
        device_id=device_id,
        now_ms=int(utcnow().timestamp() * 1000),
    )
    values: dict[str, Any] = {}
    if resolution != "keep_server" and conflict.table_name in TABLES:
        values = _values(conflict, resolution, value)
        _apply_values(session, scope, conflict, cs, values)
    if conflict.inspection_id:
        for row in writer.load_rows(
            session, TABLES["inspections"].table, "id", [conflict.inspection_id]
        ):
            cs.add_context("inspections", row)
            cs.recompute.add(row["id"])
    cs.audit.append(
        AuditNote(
            conflict.table_name.rstrip("s"),
            conflict.record_id,
            "resolve_conflict",
            {"conflict": conflict.id, "resolution": resolution, "values": values},
            inspection_id=conflict.inspection_id,
        )
    )
    if rules is not None:
        rules.apply(session, cs)
    writer.write(session, cs)
    return conflict


def _apply_values(
    session: Session, scope: Scope, conflict: Conflict, cs: ChangeSet, values: dict[str, Any]
) -> None:
    """Write the chosen values onto the record (creating it if the server never had it)."""
    current = current_record(session, conflict)
    if current is None:
        if not conflict.site_id or not scope.sees_site(conflict.site_id):
            raise Invalid(
                "The record does not exist on the server and has no site in "
                "your scope to create it in.",
                reason="not_resolvable",
            )
        row = {c: None for c in TABLES[conflict.table_name].writable}
        row.update(values, id=conflict.record_id)
        if conflict.table_name != "inspections":
            row["site_id"] = conflict.site_id
        else:
            row["site_id"] = row.get("site_id") or conflict.site_id
            row["inspector_id"] = conflict.user_id
            row["status"] = row.get("status") or "in_progress"
        cs.add_new(conflict.table_name, row)
        return
    scope.check_write(current.get("site_id") or conflict.site_id, "record")
    after = cs.add_context(conflict.table_name, current)
    after.update(values)
    after["deleted_at"] = None
    cs.bump(conflict.table_name, conflict.record_id)
