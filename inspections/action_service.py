"""Corrective actions (整改) over REST: the per-site ledger, raising by hand, status moves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, and_, func, not_, or_, select
from sqlalchemy.orm import Session

from inspections import actions as action_rules
from inspections.plan_rules import action_created
from store.changeset import AuditNote, ChangeSet
from store.db import is_postgres
from store.errors import Forbidden, Invalid, NotFound
from store.models import Action, Attachment, Inspection, Response, Site
from store.types import epoch_ms, from_epoch_ms, new_id, utcnow
from sync import writer
from sync.scope import Scope, working_at
from sync.tables import TABLES

CLOSED = ("resolved", "verified")


def now_ms() -> int:
    """Epoch milliseconds now (actions keep device-style times)."""
    return int(utcnow().timestamp() * 1000)


def ledger(scope: Scope, filters: dict[str, Any], at_ms: int | None = None) -> Select:
    """Actions in scope, filterable; overdue = past due and not resolved or verified."""
    at_ms = at_ms or now_ms()
    stmt = select(Action).where(Action.deleted_at.is_(None), scope.site_clause(Action.site_id))
    for key in ("site_id", "status", "priority", "inspection_id", "assignee_id", "source"):
        if filters.get(key):
            stmt = stmt.where(getattr(Action, key) == filters[key])
    if filters.get("region_id"):
        stmt = stmt.where(
            Action.site_id.in_(select(Site.id).where(Site.region_id == filters["region_id"]))
        )
    overdue = and_(
        Action.due_at.is_not(None), Action.due_at < at_ms, not_(Action.status.in_(CLOSED))
    )
    if filters.get("overdue") is True:
        stmt = stmt.where(overdue)
    elif filters.get("overdue") is False:
        stmt = stmt.where(or_(not_(overdue), Action.due_at.is_(None)))
    return stmt.order_by(Action.due_at.asc().nulls_last(), Action.id)


def is_overdue(action: Action, at_ms: int | None = None) -> bool:
    """Past due and not yet resolved."""
    at = from_epoch_ms(at_ms or now_ms())
    due = from_epoch_ms(action.due_at) if action.due_at is not None else None
    return action_rules.is_overdue(action.status, due, at)


def decorate(session: Session, actions: list[Action]) -> list[Action]:
    """Give each action its derived `overdue` flag and its `evidence` attachments (one query)."""
    evidence: dict[str, list[Attachment]] = {}
    ids = [a.id for a in actions]
    if ids:
        rows = session.execute(
            select(Attachment).where(Attachment.action_id.in_(ids), Attachment.deleted_at.is_(None))
        ).scalars()
        for att in rows:
            evidence.setdefault(att.action_id, []).append(att)
    at = now_ms()
    for a in actions:
        a.overdue = is_overdue(a, at)
        a.evidence = evidence.get(a.id, [])
    return actions


def get(
    session: Session, scope: Scope, action_id: str, lock: bool = False, write: bool = False
) -> Action:
    """One live action in scope: outside it, 404 to read it and 403 to change it (`write`);
    `lock` holds its row until the transaction ends (PostgreSQL)."""
    if lock and is_postgres(session):
        action = session.get(Action, action_id, with_for_update=True, populate_existing=True)
    else:
        action = session.get(Action, action_id)
    if action is None or action.deleted_at is not None:
        raise NotFound("No corrective action with that id.")
    scope.check(action.site_id, "corrective action", write=write)
    return action


def evidence_count(session: Session, action_id: str, uploaded: bool = False) -> int:
    """Live attachments that document this action (if `uploaded`: its photos whose bytes are
    on the server, what a verifier looks at; a signature is no picture of the fix)."""
    stmt = (
        select(func.count())
        .select_from(Attachment)
        .where(Attachment.action_id == action_id, Attachment.deleted_at.is_(None))
    )
    if uploaded:
        stmt = stmt.where(Attachment.uploaded.is_(True), Attachment.kind == "photo")
    return session.execute(stmt).scalar_one()


def _cs(scope: Scope) -> ChangeSet:
    return ChangeSet(user_id=scope.user_id, role=scope.role, device_id=None, now_ms=now_ms())


def _check_links(session: Session, data: dict[str, Any], site_id: str) -> None:
    """The answer an action fixes belongs to its inspection; its assignee is an active user
    who works at its site (422 naming the field otherwise)."""
    response_id = data.get("response_id")
    if response_id:
        response = session.get(Response, response_id)
        if (
            response is None
            or response.deleted_at is not None
            or response.inspection_id != data.get("inspection_id")
        ):
            raise Invalid(
                "The answer must be one of the action's inspection's answers.",
                errors={"response_id": ["not an answer of this inspection"]},
            )
    assignee_id = data.get("assignee_id")
    # One rule with a push's assignees (plan_rules._action_links).
    if assignee_id and (assignee_id, site_id) not in working_at(session, [(assignee_id, site_id)]):
        raise Invalid(
            "The assignee must be an active user who works at the action's site.",
            errors={"assignee_id": ["no active user at this site"]},
        )


def create(session: Session, scope: Scope, data: dict[str, Any]) -> str:
    """Raise an action by hand at a site in scope (403 outside it)."""
    site_id = data.get("site_id")
    if data.get("inspection_id"):
        insp = session.get(Inspection, data["inspection_id"])
        if insp is None or insp.deleted_at is not None or not scope.sees_site(insp.site_id):
            raise Invalid("Unknown inspection.", errors={"inspection_id": ["no such inspection"]})
        site_id = site_id or insp.site_id
        if site_id != insp.site_id:
            raise Invalid(
                "The action's site must be its inspection's site.",
                errors={"site_id": ["differs from the inspection's site"]},
            )
    if not site_id:
        raise Invalid("Say where: site_id or inspection_id.", errors={"site_id": ["required"]})
    site = session.get(Site, site_id)
    if site is None or site.deleted_at is not None:
        raise Invalid("Unknown site.", errors={"site_id": ["no such site"]})
    if not scope.sees_site(site_id):
        raise Forbidden("You may not raise an action at a site outside your scope.")
    _check_links(session, data, site_id)
    cs = _cs(scope)
    row = {c: data.get(c) for c in TABLES["actions"].writable}
    due = data.get("due_at")
    row.update(
        id=new_id(),
        site_id=site_id,
        status="open",
        created_by=scope.user_id,
        priority=data.get("priority") or "medium",
        source="manual",
        due_at=epoch_ms(due) if isinstance(due, dt.datetime) else None,
    )
    if row["due_at"] is None:
        row["due_at"] = action_rules.ActionPolicy().default_due_ms(row["priority"], cs.now_ms)
    cs.add_new("actions", row)
    # What it was raised as (status, priority, due, assignee...), as for a device's.
    cs.audit.append(action_created(row))
    writer.write(session, cs)
    return row["id"]


def transition(
    session: Session, scope: Scope, action_id: str, target: str, note: str | None
) -> Action:
    """Move an action along open -> in_progress -> resolved -> verified (or reopened)."""
    # Held while its status and evidence are judged: a push deleting its last photo, or
    # another transition, commits before or after this one, never in between.
    action = get(session, scope, action_id, lock=True, write=True)
    try:
        action_rules.action_transition(
            action.status,
            target,
            scope.role,
            # Only a note written as a resolution (this request's, or one a device drafted)
            # says what was done: start, verify and reopen comments go to the audit trail.
            note=note or action.resolution_note,
            has_evidence=evidence_count(session, action.id) > 0,
            evidence_uploaded=evidence_count(session, action.id, uploaded=True) > 0,
        )
    except action_rules.ActionRefused as exc:
        if exc.reason == "wrong_role":
            raise Forbidden(exc.message, reason=exc.reason) from None
        raise Invalid(exc.message, reason=exc.reason) from None
    if action.status == target:
        # A repeated request (a retry, a second tap) changes nothing: who verified or resolved
        # it, when, and with what note stay as they were.
        return action
    cs = _cs(scope)
    row = cs.add_context(
        "actions", writer.load_rows(session, TABLES["actions"].table, "id", [action.id])[0]
    )
    old = row["status"]
    row["status"] = target
    if target == "resolved":
        row["resolved_at"] = utcnow()
        if note:
            row["resolution_note"] = note
    if target == "verified":
        row["verified_by"], row["verified_at"] = scope.user_id, now_ms()
    if target == "reopened":
        row["verified_by"], row["verified_at"], row["resolved_at"] = None, None, None
        # The fix was not good enough: resolving again takes a new note (the reason for
        # reopening is kept in the audit trail).
        row["resolution_note"] = None
    cs.audit.append(
        AuditNote(
            "action",
            action.id,
            "transition",
            {"status": [old, target], "note": note},
            inspection_id=row.get("inspection_id"),
        )
    )
    writer.write(session, cs)
    session.expire(action)
    return action
