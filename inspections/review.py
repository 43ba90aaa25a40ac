"""Review of completed inspections by regional managers and HQ: queue, full view, decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from inspections import lifecycle
from inspections.plan_rules import (
    InspectionRules,
    decode_value,
    link_problem,
    occurrence_links,
    scored_answers,
)
from inspections.template_rules import iter_items
from store.changeset import AuditNote, ChangeSet, Row
from store.db import is_postgres
from store.enums import REVIEWER_ROLES
from store.errors import Forbidden, Invalid, NotFound
from store.models import (
    Action,
    Attachment,
    AuditEvent,
    Conflict,
    Inspection,
    Response,
    Site,
    TemplateVersion,
    User,
)
from store.types import utcnow
from sync import writer
from sync.scope import Scope
from sync.tables import TABLES

# The statuses of an inspection that is done: it counts, and it fulfils its occurrence.
DONE = ("completed", "approved")


def queue(scope: Scope, filters: dict[str, Any]) -> Select:
    """Inspections awaiting review (or in another review status), newest first, in scope."""
    if not scope.is_reviewer:
        raise Forbidden("The review queue is for regional managers and HQ.", reason="wrong_role")
    stmt = select(Inspection).where(
        Inspection.deleted_at.is_(None), scope.site_clause(Inspection.site_id)
    )
    stmt = stmt.where(Inspection.status == (filters.get("status") or "completed"))
    for key in (
        "site_id",
        "template_id",
        "inspector_id",
        "passed",
        "critical_failed",
        "has_conflicts",
        "media_complete",
    ):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Inspection, key) == filters[key])
    if filters.get("template_key"):
        keys = select(TemplateVersion.id).where(
            TemplateVersion.template_key == filters["template_key"]
        )
        stmt = stmt.where(Inspection.template_id.in_(keys))
    if filters.get("region_id"):
        stmt = stmt.where(
            Inspection.site_id.in_(select(Site.id).where(Site.region_id == filters["region_id"]))
        )
    if filters.get("completed_from"):
        stmt = stmt.where(Inspection.completed_received_at >= filters["completed_from"])
    if filters.get("completed_to"):
        stmt = stmt.where(Inspection.completed_received_at < filters["completed_to"])
    return stmt.order_by(
        Inspection.completed_received_at.desc().nulls_last(),
        Inspection.completed_at.desc(),
        Inspection.id,
    )


def get_inspection(
    session: Session, scope: Scope, inspection_id: str, write: bool = False, lock: bool = False
) -> Inspection:
    """One live inspection in scope. Outside it, 404 to read it (never revealing that it
    exists) and 403 to change it (domain.md); `lock` holds its row until the transaction ends
    (PostgreSQL)."""
    if lock and is_postgres(session):
        # Taken, and the row read again, before anything is judged from it: another writer of
        # the inspection (a push, a review, a completion) commits before or after the caller,
        # never in between. The inspection is the first row every writer locks (README).
        insp = session.get(Inspection, inspection_id, with_for_update=True, populate_existing=True)
    else:
        insp = session.get(Inspection, inspection_id)
    if insp is None or insp.deleted_at is not None:
        raise NotFound("No inspection with that id.")
    scope.check(insp.site_id, "inspection", write=write)
    return insp


def detail(session: Session, scope: Scope, inspection_id: str) -> dict[str, Any]:
    """The full view a reviewer needs: answers (failed first), evidence, signatures, missing
    evidence, conflicts, actions and the audit trail."""
    insp = get_inspection(session, scope, inspection_id)
    version = session.get(TemplateVersion, insp.template_id)
    responses = [
        dict(r)
        for r in session.execute(
            select(Response.__table__).where(
                Response.inspection_id == insp.id, Response.deleted_at.is_(None)
            )
        ).mappings()
    ]
    attachments = (
        session.execute(
            select(Attachment).where(
                Attachment.inspection_id == insp.id, Attachment.deleted_at.is_(None)
            )
        )
        .scalars()
        .all()
    )
    # Of two answers to one item, the one the score used (never the newest rev: the server's
    # clearing of the other's score gives it a newer one).
    by_key = scored_answers(responses)
    photos: dict[str, list[Attachment]] = {}
    for a in attachments:
        photos.setdefault(a.response_id or "", []).append(a)
    items = []
    if version is not None:
        for section, item in iter_items(version.body):
            resp = by_key.get(item["key"]) or {}
            value, _ = decode_value(resp.get("value"))
            items.append(
                {
                    "section": section["key"],
                    "section_title": section.get("title"),
                    "key": item["key"],
                    "label": item.get("label"),
                    "type": item["type"],
                    "critical": bool(item.get("critical")),
                    "required": item.get("required", True),
                    "answer": value,
                    "note": resp.get("note"),
                    "failed": bool(resp.get("failed")),
                    "item_score": resp.get("item_score"),
                    "response_id": resp.get("id"),
                    "evidence": list(photos.get(resp.get("id") or "-", [])),
                }
            )
    items.sort(key=lambda i: (not i["failed"], not i["critical"]))
    site = session.get(Site, insp.site_id)
    inspector = session.get(User, insp.inspector_id) if insp.inspector_id else None
    missing = missing_for(insp, version, by_key, attachments)
    return {
        "inspection": insp,
        "site": site,
        "inspector": inspector,
        "template": version,
        "items": items,
        "signatures": [a for a in attachments if a.kind == "signature"],
        "missing_evidence": missing,
        "conflicts": session.execute(
            select(Conflict).where(Conflict.inspection_id == insp.id).order_by(Conflict.created_at)
        )
        .scalars()
        .all(),
        "actions": session.execute(
            select(Action)
            .where(Action.inspection_id == insp.id, Action.deleted_at.is_(None))
            .order_by(Action.due_at)
        )
        .scalars()
        .all(),
        "audit": audit_trail(session, "inspection", insp.id),
    }


def missing_for(
    insp: Inspection,
    version: TemplateVersion | None,
    by_key: dict[str, Row],
    attachments: list[Attachment],
) -> list[dict]:
    """Which required photos/signatures are not uploaded yet (by_key: the scored answers,
    plan_rules.scored_answers)."""
    from inspections import scoring
    from inspections.evidence import missing_evidence, tally

    if version is None:
        return []
    answers = {}
    for key, resp in by_key.items():
        value, err = decode_value(resp["value"])
        if value is not None and not err:
            answers[key] = value
    # The rule completion applies (plan_rules): only the kind of evidence an item asks for.
    evidence = tally(
        {item["key"]: item for _s, item in iter_items(version.body)},
        {r["id"]: k for k, r in by_key.items()},
        (
            {
                "response_id": a.response_id,
                "kind": a.kind,
                "signed_content_sha256": a.signed_content_sha256,
                "uploaded": a.uploaded,
            }
            for a in attachments
        ),
    )
    result = scoring.score(
        version.body,
        version.pass_threshold,
        answers,
        {k: v["records"] for k, v in evidence.items()},
    )
    return missing_evidence(version.body, result, evidence)


def audit_trail(session: Session, entity: str, entity_id: str) -> list[AuditEvent]:
    """Audit events of one record, oldest first (for an inspection, also its children's)."""
    column = AuditEvent.inspection_id if entity == "inspection" else AuditEvent.entity_id
    stmt = select(AuditEvent).where(column == entity_id)
    if entity != "inspection":
        stmt = stmt.where(AuditEvent.entity == entity)
    return list(session.execute(stmt.order_by(AuditEvent.at, AuditEvent.id)).scalars())


def _plan(session: Session, scope: Scope, insp: Inspection) -> tuple[ChangeSet, Row]:
    cs = ChangeSet(
        user_id=scope.user_id,
        role=scope.role,
        device_id=None,
        now_ms=int(utcnow().timestamp() * 1000),
    )
    row = writer.load_rows(session, TABLES["inspections"].table, "id", [insp.id])[0]
    return cs, cs.add_context("inspections", row)


def decide(
    session: Session,
    scope: Scope,
    rules: InspectionRules,
    inspection_id: str,
    decision: str,
    comment: str | None,
) -> Inspection:
    """Approve, or return for rework with a comment; the device learns on its next pull."""
    insp = get_inspection(session, scope, inspection_id, write=True, lock=True)
    if scope.role not in REVIEWER_ROLES:
        raise Forbidden("Only regional managers and HQ review inspections.", reason="wrong_role")
    if decision != "archive" and insp.inspector_id == scope.user_id:
        # Four eyes: whoever collected the evidence does not also sign it off.
        raise Forbidden(
            "You ran this inspection; another regional manager or HQ reviews it.",
            reason="own_inspection",
        )
    target = {"approve": "approved", "return": "returned", "archive": "archived"}[decision]
    if decision == "return" and not (comment or "").strip():
        raise Invalid(
            "Say what must be reworked: a comment is required to return an inspection.",
            errors={"comment": ["required when returning"]},
        )
    if insp.status == target:
        return insp  # a retried decision changes nothing
    try:
        lifecycle.transition(insp.status, target, scope.role, via="review")
    except lifecycle.TransitionRefused as exc:
        if exc.reason == "wrong_role":  # who may, not what state: a 403 like every role rule
            raise Forbidden(exc.message, reason=exc.reason) from None
        raise Invalid(exc.message, reason="invalid_transition") from None
    cs, row = _plan(session, scope, insp)
    old = row["status"]
    row["status"] = target
    changes: dict[str, Any] = {"status": [old, target], "comment": comment}
    if decision == "archive":
        changes.update(_archive_undone(row, old))
    else:
        row["review_state"] = "approved" if decision == "approve" else "returned"
        row["review_comment"] = comment.strip() if comment else None
        row["reviewed_by"] = scope.user_id
        row["reviewed_at"] = dt.datetime.now(dt.UTC)
    cs.recompute.add(insp.id)
    cs.audit.append(AuditNote("inspection", insp.id, decision, changes, inspection_id=insp.id))
    rules.apply(session, cs)
    if decision == "return":
        _release_occurrence(session, cs, row)
    writer.write(session, cs)
    session.expire(insp)
    return insp


def _archive_undone(row: Row, old: str) -> dict[str, Any]:
    """Clear the completion time of an inspection archived while not done; the audit change."""
    # Reports and rollups (store/rollups.py) count an archived inspection by its completion
    # time: only one archived while completed or approved keeps it. A returned one (or one
    # back in progress) was not done when archived, and archived is final: nothing re-sets it.
    received = row.get("completed_received_at")
    if old in DONE or received is None:
        return {}
    row["completed_received_at"] = None
    return {"completed_received_at": [received.isoformat(), None]}


def _release_occurrence(session: Session, cs: ChangeSet, insp: Row) -> None:
    """Take the occurrence a returned inspection fulfilled from it, through the revs."""
    # Another done inspection of the occurrence takes it over; else it is open again until
    # this one is completed again (plan_rules marks it done then), and devices pull either.
    occ_id = insp.get("occurrence_id")
    if not occ_id:
        return
    found = writer.load_rows(session, TABLES["occurrences"].table, "id", [occ_id])
    if not found or found[0]["status"] != "done" or found[0]["inspection_id"] != insp["id"]:
        return  # fulfilled by another inspection (or not at all): that stands
    occ = cs.add_context("occurrences", found[0])
    other = _other_fulfilment(session, occ, insp["id"])
    # The stored status only says done or not: "upcoming" is what generation stores, and
    # readers derive due, overdue and missed from the times (schedules.status).
    occ.update(status="done" if other else "upcoming", inspection_id=other)
    cs.audit.append(
        AuditNote(
            "occurrence",
            occ_id,
            "reopen" if other is None else "refulfil",
            {"status": ["done", occ["status"]], "inspection_id": [insp["id"], other]},
            inspection_id=insp["id"],
        )
    )


def _other_fulfilment(session: Session, occ: Row, returned_id: str) -> str | None:
    """The earliest other live done inspection of this occurrence that fulfils it, by the
    rules a completion is linked by (plan_rules.link_problem)."""
    # A run refused for it when completed (another inspector's, done before its window
    # opened...) names it all the same: it must not be handed the occurrence now.
    stmt = (
        select(
            Inspection.id,
            Inspection.site_id,
            Inspection.template_id,
            Inspection.inspector_id,
            Inspection.completed_at,
        )
        .where(
            # Indexed (ix_inspections_site_rev); a run at another site never fulfils it.
            Inspection.site_id == occ["site_id"],
            Inspection.occurrence_id == occ["id"],
            Inspection.id != returned_id,
            Inspection.deleted_at.is_(None),
            Inspection.status.in_(DONE),
        )
        .order_by(Inspection.completed_received_at, Inspection.id)
    )
    runs = [dict(r) for r in session.execute(stmt).mappings()]
    if not runs:
        return None
    versions = sorted({r["template_id"] for r in runs if r["template_id"]})
    link = occurrence_links(session, [occ["id"]], versions).get(occ["id"])
    return next((r["id"] for r in runs if link_problem(r, link) is None), None)


def complete(
    session: Session, scope: Scope, rules: InspectionRules, inspection_id: str
) -> Inspection:
    """The inspector completes an inspection over REST: the same rules as a synced completion,
    but unanswered required items are a 422 naming them (nothing is recorded)."""
    # Locked like a push completing it: a second tap, a retry or a push in flight is judged
    # on this one's outcome (already completed: nothing to do), so none opens the corrective
    # actions a second time.
    insp = get_inspection(session, scope, inspection_id, write=True, lock=True)
    if scope.role != "inspector" or insp.inspector_id not in (None, scope.user_id):
        raise Forbidden(
            "Only the inspector who ran it completes an inspection.", reason="wrong_role"
        )
    if insp.status == "completed":
        return insp
    try:
        lifecycle.transition(insp.status, "completed", scope.role, via="device")
    except lifecycle.TransitionRefused as exc:
        raise Invalid(exc.message, reason="invalid_transition") from None
    cs, row = _plan(session, scope, insp)
    row["status"] = "completed"
    # Completed now, as the server sees it: a returned inspection keeps the time it was
    # first completed, which would otherwise stand for this completion too.
    row["completed_at"] = cs.now_ms
    cs.device_changed.setdefault("inspections", {})[insp.id] = {"status", "completed_at"}
    rules.apply(session, cs)
    # What the rules refused the completion for: required items unanswered, or no template
    # version to score it against.
    missing = [c for c in cs.conflicts if c.kind == "incomplete" or c.column == "template_id"]
    if missing:
        raise Invalid(
            f"Cannot complete: {missing[0].detail}.",
            reason="incomplete",
            errors={missing[0].column or "status": [missing[0].detail]},
        )
    writer.write(session, cs)
    session.expire(insp)
    return insp
