"""Conflict records: listing for reviewers, and resolution through the same rev machinery."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from store.changeset import AuditNote, ChangeSet, ConflictNote, Row
from store.db import is_postgres
from store.enums import LOCKED_STATUSES
from store.errors import Invalid, NotFound
from store.models import Blob, Conflict
from store.signature_limits import blob_problem
from store.types import utcnow
from sync import writer
from sync.push import Rules, adopt_pending, answer_problem, to_db, tombstone
from sync.scope import Scope
from sync.tables import PLACEMENT, TABLES, UPLOADED_CONTENT, TableSpec
from sync.validate import REQUIRED, check_value

RESOLUTIONS = ("keep_server", "take_device", "edit")
# Children locked with their inspection (actions follow their own lifecycle).
LOCKED_WITH_INSPECTION = ("inspections", "responses", "attachments")
# Inspection statuses no door leads out of for its records (completed ones can be returned).
FROZEN = ("approved", "archived")


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


def get(
    session: Session, scope: Scope, conflict_id: str, lock: bool = False, write: bool = False
) -> Conflict:
    """One conflict in scope: outside it, 404 to read it and 403 to resolve it (`write`);
    `lock` holds its row until the transaction ends."""
    scope.require_role("regional_manager", "hq")
    if lock:
        # FOR UPDATE serialises resolutions of one conflict: a second one waits, then reads
        # the first one's resolved_at (SQLite serialises writers at BEGIN IMMEDIATE anyway).
        row = session.get(Conflict, conflict_id, with_for_update=True, populate_existing=True)
    else:
        row = session.get(Conflict, conflict_id)
    if row is None:
        raise NotFound("No conflict with that id.")
    if not scope.is_hq:
        scope.check(row.site_id, "conflict", write=write)
    return row


def current_record(session: Session, conflict: Conflict) -> dict[str, Any] | None:
    """The record as it is now (None when it does not exist on the server)."""
    spec = TABLES.get(conflict.table_name)
    if spec is None:
        return None
    rows = writer.load_rows(session, spec.table, "id", [conflict.record_id])
    return rows[0] if rows else None


def _wanted(conflict: Conflict, resolution: str, value: Any) -> dict[str, Any]:
    """The wire values a resolution asks to write (not yet checked)."""
    spec = TABLES[conflict.table_name]
    if resolution == "keep_server":
        # Only a concurrent edit left the device's value in place; every other kind refused
        # the device, so the server's value is already what is stored. A status is never
        # written back: only review moves a status, so keeping the server's status closes
        # the conflict and leaves the status where it is now.
        if conflict.kind == "concurrent_edit" and conflict.column not in (None, "status"):
            return {conflict.column: conflict.server_value}
        return {}
    source = conflict.device_value if resolution == "take_device" else value
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


def _device_changes(device_value: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """Of a device's whole record refused as an update of a stored one, the columns it changed
    (`_changed`), as the push would have applied them: the rest is the device's copy of the
    server's values, stale by now, and taking it would undo what others changed since."""
    if not isinstance(device_value, dict) or device_value.get("_status") == "created":
        return wanted
    raw = device_value.get("_changed")
    if not isinstance(raw, str) or not raw.strip():
        return wanted
    named = {c.strip() for c in raw.split(",")}
    return {c: v for c, v in wanted.items() if c in named}


def _checked(spec: TableSpec, values: dict[str, Any]) -> dict[str, Any]:
    """Check each value exactly as a push would and convert it to its stored form."""
    errors: dict[str, list[str]] = {}
    for col, value in values.items():
        problem = check_value(spec.columns[col], value)
        if problem:
            errors[col] = [problem]
    if errors:
        col, (problem,) = next(iter(errors.items()))
        raise Invalid(
            f"The value for {col} {problem}; nothing was changed.",
            errors=errors,
            reason="invalid_value",
        )
    return {col: to_db(spec.columns[col].kind, value) for col, value in values.items()}


def _refuse_status(name: str, record_id: str, old: Any, new: Any) -> None:
    """Status moves only through its own endpoints, where the lifecycle rules are applied."""
    if name == "inspections":
        how = (
            f"approve it or return it for rework with POST /inspections/{record_id}/approve "
            "or /return"
        )
    else:
        how = f"use POST /{name}/{record_id}/transition"
    raise Invalid(
        f"A resolution cannot change the status ({old} -> {new}): {how}, then resolve the "
        "conflict keeping the server's value.",
        errors={"status": ["cannot be changed by a resolution"]},
        reason="review_only",
    )


def _refuse_locked(inspection: Row) -> None:
    """Completed and approved inspections change only through review."""
    status = inspection["status"]
    hint = (
        f"return it for rework first (POST /inspections/{inspection['id']}/return), then "
        "resolve the conflict"
        if status == "completed"
        else "it can no longer change; resolve the conflict keeping the server's value"
    )
    raise Invalid(
        f"The inspection is {status}, so this record is locked: {hint}.",
        reason="locked",
    )


def _lock_record(session: Session, conflict: Conflict) -> tuple[Row | None, Row | None]:
    """The record and the inspection that locks it, both held FOR UPDATE on PostgreSQL;
    the inspection first, in the order a push takes them, so the two never deadlock."""
    spec = TABLES[conflict.table_name]
    lock = is_postgres(session)
    rows = writer.load_rows(session, spec.table, "id", [conflict.record_id])
    if not rows:
        return None, None
    parent_id = None
    if conflict.table_name == "inspections":
        parent_id = conflict.record_id
    elif conflict.table_name in LOCKED_WITH_INSPECTION:
        parent_id = rows[0].get("inspection_id")
    parent = None
    if parent_id:
        found = writer.load_rows(session, TABLES["inspections"].table, "id", [parent_id], lock=lock)
        parent = found[0] if found else None
    elif lock and rows[0].get("inspection_id"):
        # An action is not locked with its inspection, but its resolution may still update
        # the inspection (its has_conflicts flag): held first all the same, as a push does.
        table = TABLES["inspections"].table
        writer.load_rows(session, table, "id", [rows[0]["inspection_id"]], lock=True)
    if conflict.table_name == "inspections":
        return parent, parent
    if rows[0].get("pending_upload"):
        # Bytes without their record: locked once the parents it is created under are.
        return rows[0], parent
    if lock and conflict.table_name == "attachments" and rows[0].get("action_id"):
        # A photo of an action is judged by the action's status (a fix's evidence is kept):
        # the action is held before the photo, as a push holds it.
        actions = TABLES["actions"].table
        writer.load_rows(session, actions, "id", [rows[0]["action_id"]], lock=True)
    if lock:
        rows = writer.load_rows(session, spec.table, "id", [conflict.record_id], lock=True)
    return rows[0], parent


def _apply_values(
    session: Session,
    scope: Scope,
    conflict: Conflict,
    resolution: str,
    cs: ChangeSet,
    wanted: dict[str, Any],
) -> dict[str, Any]:
    """Write the chosen values onto the record (creating it if the server never had it);
    returns the values written."""
    name = conflict.table_name
    spec = TABLES[name]
    current, inspection = _lock_record(session, conflict)
    if current is None or current.get("pending_upload"):
        if resolution == "keep_server":
            return {}  # the server has no such record, and keeps having none
        # Bytes that came before the record (or after it was refused) hold its id: the
        # record is made over them, as a push makes it.
        return _create(session, scope, conflict, cs, wanted, pending=current)
    if current.get("deleted_at") is not None:
        if resolution == "keep_server":
            return {}  # the server's state is the tombstone: nothing to write
        raise Invalid(
            "This record was deleted on the server, and a resolution does not bring deleted "
            "records back; resolve the conflict keeping the server's value to close it.",
            reason="not_resolvable",
        )
    scope.check_write(current.get("site_id") or conflict.site_id, "record")
    if resolution == "keep_server" and _frozen(inspection):
        return {}  # it can never change again: the stored value is the server's for good
    if resolution == "take_device" and not conflict.column:
        wanted = _device_changes(conflict.device_value, wanted)
    values = _checked(spec, wanted)
    changes = {c: v for c, v in values.items() if current.get(c) != v}
    if "status" in changes:
        _refuse_status(name, conflict.record_id, current.get("status"), changes["status"])
    moved = sorted(set(changes) & set(PLACEMENT.get(name, ())))
    if moved:
        raise Invalid(
            f"A resolution cannot move a record: {', '.join(moved)} must stay as it is on the "
            "server. Leave it out of the value, or keep the server's value.",
            errors={c: ["cannot be changed by a resolution"] for c in moved},
            reason="not_resolvable",
        )
    if changes.get("response_id"):
        _check_answer(session, name, current.get("inspection_id"), changes["response_id"])
    content = sorted(set(changes) & set(UPLOADED_CONTENT)) if current.get("uploaded") else []
    if content:
        # The stored bytes were verified against these: other values would point the record
        # at other bytes (perhaps another site's photo) while it still says it is uploaded.
        raise Invalid(
            f"The file of this attachment is uploaded and verified: {', '.join(content)} "
            "describe its bytes and cannot change. Keep the server's value; a different file "
            "is a new attachment.",
            errors={c: ["fixed once the file is uploaded"] for c in content},
            reason="not_resolvable",
        )
    if changes.get("kind") == "signature" and current.get("uploaded"):
        _check_signature_bytes(session, current)
    if inspection is not None:
        cs.add_context("inspections", inspection)
    after = cs.add_context(name, current)
    after.update(changes)
    if changes:
        # Marked as a device's change so the injected rules check it as they check a push
        # (locks, answers); a refusal becomes a 422 (see _refuse_by_rules).
        cs.device_changed.setdefault(name, {})[conflict.record_id] = set(changes)
    cs.bump(name, conflict.record_id)
    return values


def _check_signature_bytes(session: Session, current: Row) -> None:
    """An uploaded attachment becomes a signature only if its verified bytes can be one (as in
    a push, push.keep_kind): processed as a photo, they passed no signature check."""
    blob = session.get(Blob, current.get("sha256") or "")
    problem = (
        blob_problem(blob.mime, blob.width, blob.height)
        if blob is not None
        else ("not_uploaded", "The server holds no processed bytes for this attachment.")
    )
    if problem is not None:
        raise Invalid(
            f"{problem[1]} The uploaded bytes are verified and kept as a "
            f"{current.get('kind')}; keep the server's value: a signature is a new attachment.",
            errors={"kind": ["its uploaded bytes cannot be a signature"]},
            reason="not_resolvable",
        )


def _frozen(inspection: Row | None) -> bool:
    """Whether the record's inspection can no longer change at all (not even once returned)."""
    return inspection is not None and inspection["status"] in FROZEN


def _is_deletion(device_value: Any) -> bool:
    """Whether the device's value is a deletion: refused out of scope ({"_deleted": true})
    or reverted by a lock ({"deleted_at": ...})."""
    return isinstance(device_value, dict) and (
        device_value.get("_deleted") is True or "deleted_at" in device_value
    )


def _live_record(session: Session, scope: Scope, conflict: Conflict, cs: ChangeSet) -> Row | None:
    """The record, locked with its inspection (which joins the plan for the rules' locks);
    None when the server has no live record; refused outside the user's scope."""
    current, inspection = _lock_record(session, conflict)
    if current is None or current.get("deleted_at") is not None:
        return None
    scope.check_write(current.get("site_id") or conflict.site_id, "record")
    if inspection is None and current.get("inspection_id"):
        # An action is not locked with its inspection, but deleting it is (as in a push).
        inspection = _row(session, "inspections", current["inspection_id"])
    if inspection is not None:
        cs.add_context("inspections", inspection)
    return current


def _row(session: Session, name: str, record_id: str) -> Row | None:
    """One stored row, or None."""
    rows = writer.load_rows(session, TABLES[name].table, "id", [record_id])
    return rows[0] if rows else None


def _take_deletion(
    session: Session, scope: Scope, conflict: Conflict, cs: ChangeSet
) -> dict[str, Any]:
    """Delete the record as the device asked, with its children; returns what was done."""
    current = _live_record(session, scope, conflict, cs)
    if current is None:
        return {}  # the server has no live record: the device's deletion already holds
    tombstone(session, cs, conflict.table_name, current)
    return {"deleted": conflict.record_id}


def _take_answer(
    session: Session, scope: Scope, conflict: Conflict, cs: ChangeSet
) -> dict[str, Any]:
    """Make the device's answer the only live one for its item: the other answers to that
    item are deleted as a device's deletion of them would be; returns what was done."""
    current = _live_record(session, scope, conflict, cs)
    if current is None:
        raise Invalid(
            "The device's answer was deleted on the server, so it cannot become the live "
            "one; resolve the conflict keeping the server's value to close it.",
            reason="not_resolvable",
        )
    table = TABLES["responses"].table
    rows = writer.load_rows(
        session, table, "inspection_id", [current["inspection_id"]], lock=is_postgres(session)
    )
    others = [
        r
        for r in rows
        if r["item_key"] == current["item_key"]
        and r["id"] != current["id"]
        and r.get("deleted_at") is None
    ]
    for row in others:
        tombstone(session, cs, "responses", row)
    return {"kept": current["id"], "deleted": sorted(r["id"] for r in others)}


def _keep_answers(
    session: Session, scope: Scope, conflict: Conflict, cs: ChangeSet
) -> dict[str, Any]:
    """Keep the server's answers to the item: the device's, scored as the newest, is deleted
    as a device's deletion of it would be (closing the conflict alone left it scored);
    returns what was done."""
    current = _live_record(session, scope, conflict, cs)
    if current is None:
        return {}  # the device's answer is gone already
    if _frozen(cs.before.get("inspections", {}).get(current["inspection_id"])):
        return {}  # it can never change again: the answers stay as they were approved
    table = TABLES["responses"].table
    rows = writer.load_rows(
        session, table, "inspection_id", [current["inspection_id"]], lock=is_postgres(session)
    )
    others = sorted(
        r["id"]
        for r in rows
        if r["item_key"] == current["item_key"]
        and r["id"] != current["id"]
        and r.get("deleted_at") is None
    )
    if not others:
        return {}  # the server's answers were deleted since: the device's is the only one
    tombstone(session, cs, "responses", current)
    return {"kept": others, "deleted": [current["id"]]}


def _plan(
    session: Session,
    scope: Scope,
    conflict: Conflict,
    resolution: str,
    value: Any,
    cs: ChangeSet,
) -> dict[str, Any]:
    """Plan what the resolution writes; returns what it writes, for the audit trail."""
    if resolution == "take_device" and _is_deletion(conflict.device_value):
        return _take_deletion(session, scope, conflict, cs)
    if resolution == "take_device" and conflict.kind == "duplicate_response":
        return _take_answer(session, scope, conflict, cs)
    if resolution == "keep_server" and conflict.kind == "duplicate_response":
        return _keep_answers(session, scope, conflict, cs)
    if resolution == "edit" and conflict.kind == "duplicate_response":
        # Its column is item_key, but editing that would move an answer to another item.
        raise Invalid(
            "Two answers for one item are resolved by choosing one: take_device keeps this "
            "answer as the item's only one, keep_server keeps the others and deletes this one.",
            reason="not_resolvable",
        )
    wanted = _wanted(conflict, resolution, value)
    if resolution == "keep_server" and not wanted:
        return {}
    return _apply_values(session, scope, conflict, resolution, cs, wanted)


def _create(
    session: Session,
    scope: Scope,
    conflict: Conflict,
    cs: ChangeSet,
    wanted: dict[str, Any],
    pending: Row | None = None,
) -> dict[str, Any]:
    """Create the record a device sent but the server never stored, at the conflict's site
    (over the `pending` row its bytes made if they came first)."""
    name = conflict.table_name
    site = conflict.site_id
    if not site or not scope.sees_site(site):
        raise Invalid(
            "The record does not exist on the server and has no site in "
            "your scope to create it in.",
            reason="not_resolvable",
        )
    values = _checked(TABLES[name], wanted)
    # The site comes from the conflict; the rest a push would have had to carry.
    missing = [c for c in REQUIRED.get(name, ()) if c != "site_id" and not values.get(c)]
    if missing:
        raise Invalid(
            f"The record does not exist on the server and cannot be created without "
            f"{', '.join(missing)}; give it in the edited value.",
            errors={c: ["required to create the record"] for c in missing},
            reason="not_resolvable",
        )
    if values.get("site_id") not in (None, site):
        raise Invalid(
            "A resolution cannot move a record: site_id must be the conflict's site.",
            errors={"site_id": ["must be the conflict's site"]},
            reason="not_resolvable",
        )
    row: Row = {c: None for c in TABLES[name].writable}
    row.update(values, id=conflict.record_id, site_id=site)
    if name == "inspections":
        row["status"] = row.get("status") or "in_progress"
        row["inspector_id"] = conflict.user_id
    else:
        _check_parents(session, conflict, cs, row)
    if name == "actions":
        if row.get("status") not in (None, "open"):
            _refuse_status(name, conflict.record_id, None, row["status"])
        row["status"] = "open"
        row["priority"] = row.get("priority") or "medium"
        row["title"] = row.get("title") or "(untitled)"
        row["created_by"] = conflict.user_id
    if name == "attachments":
        row["kind"] = row.get("kind") or "photo"
    if pending is not None:
        # Held after its parents, in the order every writer takes them; read again under it.
        found = writer.load_rows(
            session, TABLES[name].table, "id", [conflict.record_id], lock=is_postgres(session)
        )
        pending = found[0] if found else None
    if pending is not None and pending.get("pending_upload"):
        adopt_pending(cs, name, pending, row, conflict.user_id, _unsigned(session, pending, row))
        return values
    if pending is not None:
        raise Invalid(  # the device's own push created it meanwhile: try again
            "The record was stored meanwhile; look at the conflict again.",
            reason="not_resolvable",
        )
    cs.add_new(name, row)
    # Created as a push creates it, so the rules check its status and its inspection's lock.
    cs.device_changed.setdefault(name, {})[conflict.record_id] = set(row)
    return values


def _unsigned(session: Session, pending: Row, row: Row) -> tuple | None:
    """Why the bytes an upload processed as a photo cannot serve the signature the record
    says it is (None when they can, or it is none), as a push judges them."""
    if row.get("kind") != "signature" or not pending.get("uploaded"):
        return None
    if pending.get("kind") == "signature":
        return None
    blob = session.get(Blob, pending.get("sha256") or "")
    if blob is None:
        return ("not_uploaded", "The server holds no processed bytes for this attachment.")
    return blob_problem(blob.mime, blob.width, blob.height)


def _check_parents(session: Session, conflict: Conflict, cs: ChangeSet, row: Row) -> None:
    """A created child must belong to a live inspection (or action) at the conflict's site;
    its inspection joins the plan so the rules see whether it is locked."""
    lock = is_postgres(session)
    # Held FOR UPDATE on PostgreSQL, the inspection before the action as a push takes them:
    # a completion (or an action's resolution) committing meanwhile must wait for this
    # resolution, or it for that, so the rules never judge the child on a stale status.
    for column, table in (("inspection_id", "inspections"), ("action_id", "actions")):
        parent_id = row.get(column)
        if not parent_id or column not in PLACEMENT[conflict.table_name]:
            continue
        found = writer.load_rows(session, TABLES[table].table, "id", [parent_id], lock=lock)
        parent = found[0] if found else None
        if parent is None or parent.get("deleted_at") is not None:
            raise Invalid(
                f"The record's {table[:-1]} {parent_id} is not on the server (or was deleted), "
                "so the record cannot be created.",
                reason="not_resolvable",
            )
        if parent.get("site_id") != conflict.site_id:
            raise Invalid(
                f"A resolution cannot move a record: {column} must point to a {table[:-1]} "
                "at the conflict's site.",
                errors={column: ["must be at the conflict's site"]},
                reason="not_resolvable",
            )
        if table == "inspections":
            cs.add_context("inspections", parent)
    if row.get("response_id") and "response_id" in TABLES[conflict.table_name].writable:
        _check_answer(session, conflict.table_name, row.get("inspection_id"), row["response_id"])


def _check_answer(session: Session, name: str, inspection_id: str | None, answer_id: str) -> None:
    """A photo or action names only an answer of its own inspection, as a push checks it."""
    # Unlocked: the inspection it must share is locked already, and no answer moves.
    problem = answer_problem(name, inspection_id, _row(session, "responses", answer_id))
    if problem is None:
        return
    # Whether another inspection's answer exists is not said: it may be outside the scope.
    why = problem[0] if problem[1] == "deleted_record" else "it is not one of its inspection's"
    raise Invalid(
        f"A resolution cannot link the record to answer {answer_id}: {why}.",
        errors={"response_id": [why]},
        reason="not_resolvable",
    )


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
    if resolution not in RESOLUTIONS:
        raise Invalid(
            "Resolution must be keep_server, take_device or edit.",
            errors={"resolution": [f"one of {', '.join(RESOLUTIONS)}"]},
        )
    conflict = get(session, scope, conflict_id, lock=True, write=True)
    if conflict.resolved_at is not None:
        raise Invalid("This conflict is already resolved.", reason="already_resolved")
    lock = is_postgres(session)
    inspections = TABLES["inspections"].table
    if lock and conflict.inspection_id:
        # Its inspection is recomputed below (its flags, an occurrence it fulfils, from its
        # status): held first, before the record, its action or a created child's parents are
        # taken, as every writer orders them; locking it only when it is read below would
        # take it after them.
        writer.load_rows(session, inspections, "id", [conflict.inspection_id], lock=True)
    cs = ChangeSet(
        user_id=scope.user_id,
        role=scope.role,
        device_id=device_id,
        now_ms=int(utcnow().timestamp() * 1000),
    )
    values: dict[str, Any] = {}
    if conflict.table_name in TABLES:
        values = _plan(session, scope, conflict, resolution, value, cs)
    # Every record the resolution changes, whose refusal by the rules refuses it all.
    changed = {(name, rid) for name, rows in cs.device_changed.items() for rid in rows}
    # What the resolution writes, column by column, for the audit trail (old -> new).
    written = {
        (name, rid): set(cols)
        for name, rows in cs.device_changed.items()
        for rid, cols in rows.items()
    }
    changed.add((conflict.table_name, conflict.record_id))
    conflict.resolved_at = utcnow()
    conflict.resolved_by = scope.user_id
    conflict.resolution = resolution
    session.flush()  # before the rules count the inspection's open conflicts
    if conflict.inspection_id:
        for row in writer.load_rows(
            session, inspections, "id", [conflict.inspection_id], lock=lock
        ):
            cs.add_context("inspections", row)
            cs.recompute.add(row["id"])
    audit = {"conflict": conflict.id, "resolution": resolution, "values": values}
    cs.audit.append(
        AuditNote(
            conflict.table_name.rstrip("s"),
            conflict.record_id,
            "resolve_conflict",
            audit,
            inspection_id=conflict.inspection_id,
        )
    )
    if rules is not None:
        rules.apply(session, cs)
    for note in cs.conflicts:
        if (note.table, note.record_id) in changed:
            _refuse_by_rules(cs, note)
    audit.update(_old_and_new(cs, conflict, written))
    writer.write(session, cs)
    return conflict


def _old_and_new(
    cs: ChangeSet, conflict: Conflict, written: dict[tuple[str, str], set[str]]
) -> dict[str, Any]:
    """The resolution's writes as the audit trail keeps them: the conflict's record's columns
    {col: [old, new]}, and each record it deleted (its cascade included) with its old values."""
    changes: dict[str, Any] = {}
    deleted: list[dict[str, Any]] = []
    for (name, rid), cols in sorted(written.items()):
        before = cs.before.get(name, {}).get(rid) or {}
        after = cs.after.get(name, {}).get(rid) or {}
        if (name, rid) == (conflict.table_name, conflict.record_id):
            changes = {
                c: [_plain(before.get(c)), _plain(after.get(c))]
                for c in sorted(cols)
                if before.get(c) != after.get(c)
            }
        if before.get("deleted_at") is None and after.get("deleted_at") is not None:
            kept = {c: _plain(before.get(c)) for c in sorted(TABLES[name].writable) if c in before}
            deleted.append({"table": name, "id": rid, "before": kept})
    out: dict[str, Any] = {"changes": changes}
    if deleted:
        out["deleted"] = deleted
    return out


def _plain(value: Any) -> Any:
    """JSON-safe value for the audit trail."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _refuse_by_rules(cs: ChangeSet, note: ConflictNote) -> None:
    """The rules refused the resolution's change as they would refuse a device's: a push
    records that as a new conflict, a resolution answers 422 and changes nothing."""
    if note.kind == "duplicate_response":
        return  # recorded as a push records it: the resolved answer is now the newest
    if note.kind == "locked":
        inspection = cs.before.get("inspections", {}).get(note.inspection_id)
        if inspection is not None and inspection["status"] in LOCKED_STATUSES:
            _refuse_locked(inspection)
        # Locked by something else: a resolved or verified action keeps its fix's photos.
        raise Invalid(f"This record is locked: {note.detail}.", reason="locked")
    if note.kind == "lifecycle":
        raise Invalid(
            f"{note.detail} A resolution cannot set that status: status changes go through "
            "the review endpoints (approve, or return for rework).",
            errors={"status": [note.detail]},
            reason="review_only",
        )
    if note.kind == "incomplete":
        raise Invalid(
            f"The inspection cannot be completed: {note.detail}. Give it the status "
            "in_progress in the edited value, or answer those items first.",
            errors={"status": [note.detail]},
            reason="incomplete",
        )
    raise Invalid(
        f"The value was refused: {note.detail}; nothing was changed.",
        errors={note.column or "value": [note.detail]},
        reason="invalid_value",
    )
