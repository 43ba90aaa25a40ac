"""The inspection rules applied to a ChangeSet, the same for sync pushes and REST calls:
locks, lifecycle, scoring, completion checks, corrective actions, evidence and flags."""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from itertools import repeat
from typing import Any

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from inspections import actions as action_rules
from inspections import lifecycle, scoring
from inspections.canonical import content_sha256, legacy_content_sha256
from inspections.evidence import missing_evidence, tally
from store.changeset import AuditNote, ChangeSet, ConflictNote, Row
from store.db import one_of
from store.enums import INSPECTOR
from store.models import Action, Attachment, AuditEvent, Conflict, Occurrence, Response
from store.models import TemplateVersion as Version
from store.types import new_id
from sync.scope import working_at

_INSPECTION_AUDITED = (
    "status",
    "area",
    "notes",
    "template_id",
    "site_id",
    "occurrence_id",
    "mode",
    "started_at",
    "completed_at",
    "deleted_at",
)
# The columns of an action a device may edit, audited old -> new (status moves as transitions).
_ACTION_AUDITED = (
    "title",
    "description",
    "priority",
    "due_at",
    "assignee_id",
    "resolution_note",
    "deleted_at",
)


def _rows(session: Session, model: type, column: str, ids: list[str]) -> list[Row]:
    if not ids:
        return []
    table = model.__table__
    stmt = select(table).where(one_of(session, table.c[column], ids))
    return [dict(r) for r in session.execute(stmt).mappings()]


def decode_value(raw: str | None) -> tuple[Any, str | None]:
    """A response's JSON text -> (value, error)."""
    if raw is None or raw == "":
        return None, None
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        return None, "the answer is not valid JSON"


class InspectionRules:
    """Apply the domain rules to a plan; construct once per app with the action policy."""

    def __init__(self, policy: action_rules.ActionPolicy | None = None) -> None:
        self.policy = policy or action_rules.ActionPolicy()
        self._index: dict[str, dict[str, list[Row]]] = {}
        self._links: dict[str, Row] | None = None
        self._items: dict[str, tuple[dict[str, dict], scoring.ScoringPlan]] = {}
        # An answer judged per (template version, item, text): a push repeats a few answers.
        self._judged: dict[tuple, tuple[Any, str | None]] = {}

    # --- entry point ----------------------------------------------------------------------

    def apply(self, session: Session, cs: ChangeSet) -> None:
        """Amend the plan in place."""
        # One object serves every request thread of a worker (gthread): the per-plan state
        # (the children index) lives on a copy, never on the shared object.
        run = copy.copy(self)
        run._index = {}
        run._links = None
        run._items = {}
        run._judged = {}
        run._apply(session, cs)

    def _apply(self, session: Session, cs: ChangeSet) -> None:
        # First: a refused link flags the action's inspection, so it must be touched.
        self._action_links(session, cs)
        ids = self._touched(cs)
        if ids:
            self._load_context(session, cs, ids)
            self._enforce_locks(cs, ids)
            self._lifecycle(cs, ids)
        # Actions before scores and flags: what they refuse is reverted, and both the scores
        # and the inspections' has_conflicts flag must see that.
        self._device_actions(session, cs)
        self._keep_fix_evidence(session, cs)
        if ids:
            versions = self._versions(session, cs, ids)
            for iid in ids:
                self._recompute(cs, iid, versions.get(cs.after["inspections"][iid]["template_id"]))
            self._flags(session, cs, ids)

    # --- context --------------------------------------------------------------------------

    def _touched(self, cs: ChangeSet) -> list[str]:
        pushed = cs.device_changed.get("inspections", {})
        ids = {
            rid
            for rid in cs.after.get("inspections", {})
            if rid in pushed
            or cs.is_new("inspections", rid)
            or cs.changed_columns("inspections", rid)
        }
        for name in ("responses", "attachments"):
            # A pass at C speed (a big push's thousands of answers name a few dozen runs); the
            # null and unknown ids this takes in are filtered out below.
            ids.update(map(dict.get, cs.after.get(name, {}).values(), repeat("inspection_id")))
        # A deleted action: its inspection's lock decides whether the deletion stands.
        for rid, row in cs.after.get("actions", {}).items():
            deleted = "deleted_at" in cs.device_changed.get("actions", {}).get(rid, ())
            if deleted and row.get("inspection_id"):
                ids.add(row["inspection_id"])
        ids |= cs.recompute
        return sorted(i for i in ids if i in cs.after.get("inspections", {}))

    def _load_context(self, session: Session, cs: ChangeSet, ids: list[str]) -> None:
        for name, model in (
            ("responses", Response),
            ("attachments", Attachment),
            ("actions", Action),
        ):
            for row in _rows(session, model, "inspection_id", ids):
                cs.add_context(name, row)

    def _children(self, cs: ChangeSet, name: str, iid: str, live: bool = True) -> list[Row]:
        index = self._index.get(name)
        if index is None:
            index = defaultdict(list)
            for row in cs.after.get(name, {}).values():
                index[row.get("inspection_id")].append(row)
            self._index[name] = index
        rows = index.get(iid, [])
        return [r for r in rows if r.get("deleted_at") is None] if live else list(rows)

    def _versions(self, session: Session, cs: ChangeSet, ids: list[str]) -> dict[str, Row]:
        tids = sorted({cs.after["inspections"][i]["template_id"] for i in ids} - {None})
        return {r["id"]: r for r in _rows(session, Version, "id", tids)}

    # --- locks and lifecycle --------------------------------------------------------------

    def _revert(
        self, cs: ChangeSet, name: str, rid: str, kind: str, detail: str, inspection_id: str | None
    ) -> None:
        """Undo a device's change to one record, keep its values in a conflict, bump the rev."""
        before = cs.before.get(name, {}).get(rid)
        after = cs.after[name][rid]
        changed = sorted(cs.device_changed.get(name, {}).get(rid, ()))
        device_values = {c: after.get(c) for c in changed}
        if "deleted_at" in device_values:
            device_values["deleted_at"] = "deleted on the device"
        cs.conflicts.append(
            ConflictNote(
                kind=kind,
                table=name,
                record_id=rid,
                detail=detail,
                inspection_id=inspection_id,
                site_id=after.get("site_id"),
                device_value=device_values,
                server_value=None
                if before is None
                else {c: _plain(before.get(c)) for c in changed},
            )
        )
        if before is None:
            del cs.after[name][rid]
            del cs.before[name][rid]
        else:
            cs.after[name][rid] = dict(before)
            cs.bump(name, rid)
        self._index.pop(name, None)  # rows were replaced: rebuild the index on next use
        cs.device_changed.get(name, {}).pop(rid, None)

    def _enforce_locks(self, cs: ChangeSet, ids: list[str]) -> None:
        for iid in ids:
            before = cs.before["inspections"].get(iid)
            if before is None or not lifecycle.is_locked(before["status"]):
                continue
            status = before["status"]
            # A record pushed with the values it already has (a push retried after its answer
            # was lost) changes nothing: nothing to refuse.
            if cs.device_changed.get("inspections", {}).get(iid):
                self._revert(
                    cs,
                    "inspections",
                    iid,
                    "locked",
                    f"the inspection is {status}; device changes are refused",
                    iid,
                )
            refused: set[str] = set()  # new answers refused
            for name in ("responses", "attachments", "actions"):
                for row in self._children(cs, name, iid, live=False):
                    rid = row["id"]
                    changed = cs.device_changed.get(name, {}).get(rid)
                    if not changed:
                        continue
                    if name == "actions" and "deleted_at" not in changed:
                        continue  # actions keep their own lifecycle; only deleting them is locked
                    prior = cs.before.get(name, {}).get(rid)
                    # New evidence, or evidence whose bytes were uploaded before its record.
                    arriving = prior is None or bool(prior.get("pending_upload"))
                    late_evidence = (
                        name == "attachments"
                        and arriving
                        and status == "completed"
                        and before.get("inspector_id") == cs.user_id
                    )
                    if late_evidence:
                        continue
                    detail = f"the inspection is {status}; device changes are refused"
                    self._revert(cs, name, rid, "locked", detail, iid)
                    if name == "responses" and prior is None:
                        refused.add(rid)
                    if name == "actions":
                        # The photos evidencing a kept action stay with it.
                        for att in self._deleted_evidence(cs, rid):
                            self._revert(cs, "attachments", att, "locked", detail, iid)
            if refused:
                self._unlink(
                    cs, iid, refused, f"its answer was refused (the inspection is {status})"
                )

    def _unlink(self, cs: ChangeSet, iid: str, refused: set[str], detail: str) -> None:
        """Keep the late photos and the actions naming a refused new answer, without it."""
        # They stay (late evidence; actions keep their own lifecycle), but naming an answer
        # the server does not have would join whatever answer is created with that id later.
        for name in ("attachments", "actions"):
            for row in self._children(cs, name, iid):
                if row.get("response_id") not in refused:
                    continue
                before = cs.before.get(name, {}).get(row["id"]) or {}
                cs.conflicts.append(
                    ConflictNote(
                        kind="invalid_value",
                        table=name,
                        record_id=row["id"],
                        column="response_id",
                        inspection_id=iid,
                        site_id=row.get("site_id"),
                        server_value=before.get("response_id"),
                        device_value=row["response_id"],
                        detail=f"{detail}; the server kept the record without it",
                    )
                )
                row["response_id"] = before.get("response_id")
                cs.bump(name, row["id"])  # the device's copy lets go of the answer

    def _deleted_evidence(self, cs: ChangeSet, action_id: str) -> list[str]:
        """Attachments of this action that the push deletes (directly or by cascade)."""
        deleted = cs.device_changed.get("attachments", {})
        return [
            rid
            for rid, row in cs.after.get("attachments", {}).items()
            if row.get("action_id") == action_id and "deleted_at" in deleted.get(rid, ())
        ]

    def _lifecycle(self, cs: ChangeSet, ids: list[str]) -> None:
        for iid in ids:
            after = cs.after["inspections"][iid]
            before = cs.before["inspections"].get(iid)
            old = before["status"] if before else "draft"
            new = after["status"]
            if old == new or iid not in cs.device_changed.get("inspections", {}):
                continue
            try:
                lifecycle.transition(old, new, cs.role, via="device")
            except lifecycle.TransitionRefused as exc:
                cs.conflicts.append(
                    ConflictNote(
                        kind="lifecycle",
                        table="inspections",
                        record_id=iid,
                        column="status",
                        inspection_id=iid,
                        site_id=after.get("site_id"),
                        server_value=old,
                        device_value=new,
                        detail=exc.message,
                    )
                )
                after["status"] = old if before else "in_progress"
                cs.bump("inspections", iid)

    # --- scoring and completion -----------------------------------------------------------

    def _recompute(self, cs: ChangeSet, iid: str, version: Row | None) -> None:
        insp = cs.after["inspections"][iid]
        if insp.get("deleted_at") is not None:
            return
        if version is None:
            detail = "unknown template version"
            before = cs.before["inspections"].get(iid)
            if insp["status"] == "completed" and (before or {}).get("status") != "completed":
                # Nothing to score it against, or to check its required items by: it cannot
                # count as done (nor reach a reviewer's queue), so it stays as it was.
                insp["status"] = (before or {}).get("status") or "in_progress"
                detail += f"; it cannot be completed and stays {insp['status']}"
                cs.bump("inspections", iid)
            cs.conflicts.append(
                ConflictNote(
                    kind="invalid_value",
                    table="inspections",
                    record_id=iid,
                    column="template_id",
                    inspection_id=iid,
                    site_id=insp.get("site_id"),
                    device_value=insp.get("template_id"),
                    detail=detail,
                )
            )
            return
        body = version["body"]
        found = self._items.get(version["id"])
        if found is None:  # once per template version: a push scores many runs of one checklist
            found = self._items[version["id"]] = (
                {item["key"]: item for _s, item in scoring.iter_items(body)},
                scoring.plan_of(body),
            )
        items, plan = found
        answers, chosen = self._answers(cs, iid, items, version["id"])
        attachments = self._children(cs, "attachments", iid)
        evidence = (
            tally(items, {r["id"]: k for k, r in chosen.items()}, attachments)
            if attachments
            else {}
        )
        result = scoring.score(
            body,
            version.get("pass_threshold"),
            answers,
            {k: v["records"] for k, v in evidence.items()},
            plan,
        )
        insp.update(
            score=result.score,
            max_score=result.max_score,
            score_percent=result.score_percent,
            grade=result.grade,
            passed=result.passed,
            critical_failed=result.critical_failed,
        )
        outcomes = result.items
        for key, response in chosen.items():
            item = outcomes.get(key)
            if item is None:
                response["failed"] = response["item_score"] = None
            else:
                response["failed"], response["item_score"] = item.failed, item.item_score
        asked = plan.asks_evidence  # most checklists ask for none: no pass over their items
        insp["media_complete"] = not (asked and missing_evidence(body, result, evidence))
        before = cs.before["inspections"].get(iid)
        completing = insp["status"] == "completed" and (before or {}).get("status") != "completed"
        if completing:
            self._complete(cs, iid, insp, before, result, body, chosen)

    def _answers(
        self, cs: ChangeSet, iid: str, items: dict[str, dict], version_id: str
    ) -> tuple[dict, dict]:
        """Decoded answers per item (the newest of duplicates) and the response chosen."""
        responses = self._children(cs, "responses", iid)
        winners: dict[str, Row] = {r["item_key"]: r for r in responses}
        if len(winners) < len(responses):  # several answers to an item: the newest is scored
            winners = self._newest_of_each(cs, iid, responses)
        answers: dict[str, Any] = {}
        chosen: dict[str, Row] = {}
        pushed = cs.device_changed.get("responses", {})
        judged = self._judged
        for key, winner in winners.items():
            raw = winner.get("value")
            found = judged.get((version_id, key, raw)) if type(raw) is str else None
            if found is None:
                found = self._judge(items.get(key), key, raw)
                if type(raw) is str and not isinstance(found[0], list | dict):
                    judged[(version_id, key, raw)] = found  # only immutable values are shared
            value, error = found
            if error:
                if winner["id"] in pushed:
                    cs.conflicts.append(
                        ConflictNote(
                            kind="invalid_value",
                            table="responses",
                            record_id=winner["id"],
                            column="value",
                            inspection_id=iid,
                            site_id=winner.get("site_id"),
                            device_value=winner.get("value"),
                            detail=error,
                        )
                    )
                winner["failed"], winner["item_score"] = None, None
                continue
            chosen[key] = winner
            if value is not None:
                answers[key] = value
        return answers, chosen

    @staticmethod
    def _judge(item: dict | None, key: str, raw: Any) -> tuple[Any, str | None]:
        """An answer's text -> (value, what is wrong with it for this item, if anything)."""
        value, error = decode_value(raw)
        if item is None:
            error = f"no item {key} in this template version"
        elif error is None and value is not None:
            error = scoring.check_answer(item, value)
        return value, error

    def _newest_of_each(self, cs: ChangeSet, iid: str, responses: list[Row]) -> dict[str, Row]:
        """Per item, the response scored among those answering it (see _newest)."""
        by_key: dict[str, list[Row]] = defaultdict(list)
        for resp in responses:
            by_key[resp["item_key"]].append(resp)
        pushed = cs.device_changed.get("responses", {})
        return {
            key: self._newest(cs, iid, key, group, pushed) if len(group) > 1 else group[0]
            for key, group in by_key.items()
        }

    def _newest(
        self, cs: ChangeSet, iid: str, key: str, group: list[Row], pushed: dict[str, set[str]]
    ) -> Row:
        """The response scored among several answers to one item; the others lose their score."""
        group.sort(key=lambda r: _scoring_rank(r, pushed))
        winner = group[-1]
        if any(pushed.get(r["id"]) for r in group):
            cs.conflicts.append(
                ConflictNote(
                    kind="duplicate_response",
                    table="responses",
                    record_id=winner["id"],
                    column="item_key",
                    inspection_id=iid,
                    site_id=winner.get("site_id"),
                    server_value=[r["id"] for r in group[:-1]],
                    device_value=winner["id"],
                    detail=f"{len(group)} answers for item {key}; the newest is scored",
                )
            )
        for other in group[:-1]:
            other["failed"], other["item_score"] = None, None
        return winner

    def _complete(
        self,
        cs: ChangeSet,
        iid: str,
        insp: Row,
        before: Row | None,
        result: Any,
        body: dict,
        chosen: dict[str, Row],
    ) -> None:
        if result.unanswered_required:
            names = ", ".join(result.unanswered_required[:10])
            cs.conflicts.append(
                ConflictNote(
                    kind="incomplete",
                    table="inspections",
                    record_id=iid,
                    column="status",
                    inspection_id=iid,
                    site_id=insp.get("site_id"),
                    server_value=(before or {}).get("status"),
                    device_value="completed",
                    detail=f"required items unanswered: {names}",
                )
            )
            insp["status"] = (before or {}).get("status") or "in_progress"
            if insp["status"] == "completed":
                insp["status"] = "in_progress"
            cs.bump("inspections", iid)
            return
        insp["review_state"] = "pending"
        insp["completed_received_at"] = dt.datetime.now(dt.UTC)
        if insp.get("completed_at") is None:
            # Completed without saying when (over REST, or a client that leaves it out): now.
            insp["completed_at"] = cs.now_ms
        completed_ms = insp["completed_at"]
        existing = {a.get("response_id") for a in self._children(cs, "actions", iid, live=False)}
        completed_at = dt.datetime.fromtimestamp(cs.now_ms / 1000, dt.UTC)
        for draft in action_rules.actions_for_failed_items(
            result, body, completed_at=completed_at, policy=self.policy
        ):
            response = chosen.get(draft.item_key)
            if response is None or response["id"] in existing:
                continue  # never twice for the same response
            action = cs.add_new(
                "actions",
                {
                    "id": new_id(),
                    "inspection_id": iid,
                    "response_id": response["id"],
                    "site_id": insp["site_id"],
                    "title": draft.title,
                    "description": draft.description,
                    "priority": draft.priority,
                    "assignee_id": insp.get("inspector_id"),
                    "due_at": int(draft.due_at.timestamp() * 1000),
                    "status": "open",
                    "created_by": None,
                    "source": "auto",
                },
            )
            cs.audit.append(action_created(action))
        cs.audit.append(
            AuditNote(
                "inspection",
                iid,
                "transition",
                {
                    "status": [(before or {}).get("status"), "completed"],
                    "completed_at": completed_ms,
                },
                inspection_id=iid,
            )
        )

    # --- flags ----------------------------------------------------------------------------

    def _flags(self, session: Session, cs: ChangeSet, ids: list[str]) -> None:
        open_conflicts = dict(
            session.execute(
                select(Conflict.inspection_id, func.count())
                .where(one_of(session, Conflict.inspection_id, ids), Conflict.resolved_at.is_(None))
                .group_by(Conflict.inspection_id)
            ).all()
        )
        fresh = {c.inspection_id for c in cs.conflicts}
        for iid in ids:
            insp = cs.after["inspections"][iid]
            insp["has_conflicts"] = bool(open_conflicts.get(iid)) or iid in fresh
            self._signatures(cs, iid)
            self._audit(cs, iid)
            if insp.get("occurrence_id") and insp["status"] in ("completed", "approved"):
                self._fulfil(session, cs, insp)

    def _signatures(self, cs: ChangeSet, iid: str) -> None:
        sigs = [
            a
            for a in self._children(cs, "attachments", iid)
            if a.get("kind") == "signature" and a.get("signed_content_sha256")
        ]
        if not sigs:
            return
        # The content includes the photos answering each response (canonical.py), never the
        # signatures themselves; _children gives live rows only. A signature made by an earlier
        # release (the legacy form) stays valid while the content it covered holds.
        insp = cs.after["inspections"][iid]
        responses = self._children(cs, "responses", iid)
        valid = {
            content_sha256(insp, responses, self._children(cs, "attachments", iid)),
            legacy_content_sha256(insp, responses),
        }
        for sig in sigs:
            sig["signature_stale"] = sig["signed_content_sha256"] not in valid

    def _audit(self, cs: ChangeSet, iid: str) -> None:
        changes: dict[str, Any] = {}
        before = cs.before["inspections"].get(iid) or {}
        after = cs.after["inspections"][iid]
        if iid in cs.device_changed.get("inspections", {}):
            for col in _INSPECTION_AUDITED:
                if before.get(col) != after.get(col):
                    changes[col] = [_plain(before.get(col)), _plain(after.get(col))]
        pushed = cs.device_changed.get("responses", {})
        olds = cs.before.get("responses", {})
        for resp in self._children(cs, "responses", iid, live=False):
            rid = resp["id"]
            if rid not in pushed:
                continue
            old = olds.get(rid)
            key = resp["item_key"]
            if old is None:  # a new response (most of a big push): the columns it sets
                value, note, deleted = resp.get("value"), resp.get("note"), resp.get("deleted_at")
                if value is not None:
                    changes[f"responses.{key}.value"] = [None, value]
                if note is not None:
                    changes[f"responses.{key}.note"] = [None, note]
                if deleted is not None:
                    changes[f"responses.{key}.deleted_at"] = [None, _plain(deleted)]
                continue
            for col in ("value", "note", "deleted_at"):
                was, now = old.get(col), resp.get(col)
                if was == now:
                    continue
                # Only deleted_at is not JSON-safe as it is (value and note are text).
                if col == "deleted_at":
                    was, now = _plain(was), _plain(now)
                changes[f"responses.{key}.{col}"] = [was, now]
        if changes:
            action = "create" if not before else "update"
            cs.audit.append(AuditNote("inspection", iid, action, changes, inspection_id=iid))

    def _fulfil(self, session: Session, cs: ChangeSet, insp: Row) -> None:
        """An inspection started from an occurrence fulfils it, when it is a run of the
        scheduled checklist at the occurrence's site and the occurrence is still live."""
        link = self._occurrence_links(session, cs).get(insp["occurrence_id"])
        problem = link_problem(insp, link, _reworked(session, cs, insp, link))
        if problem:
            if _newly_linked(cs, insp):
                self._occurrence_conflict(cs, insp, problem)
            return
        row = cs.after.get("occurrences", {}).get(link["id"])
        if row is None:
            row = cs.add_context("occurrences", link["row"])
        if row.get("status") != "done":
            old = [row.get("status"), row.get("inspection_id")]
            row.update(status="done", inspection_id=insp["id"])
            cs.audit.append(
                AuditNote(
                    "occurrence",
                    link["id"],
                    "fulfil",
                    {"status": [old[0], "done"], "inspection_id": [old[1], insp["id"]]},
                    inspection_id=insp["id"],
                )
            )

    def _occurrence_links(self, session: Session, cs: ChangeSet) -> dict[str, Row]:
        """The links (occurrence_links) of the occurrences the plan's completed inspections
        name, with their versions (one query per plan)."""
        if self._links is not None:
            return self._links
        linking = [
            i
            for i in cs.after.get("inspections", {}).values()
            if i.get("occurrence_id") and i.get("status") in ("completed", "approved")
        ]
        self._links = occurrence_links(
            session,
            sorted({i["occurrence_id"] for i in linking}),
            sorted({i["template_id"] for i in linking if i.get("template_id")}),
        )
        return self._links

    def _occurrence_conflict(self, cs: ChangeSet, insp: Row, problem: str) -> None:
        """Keep the inspection, leave the occurrence open, and tell the reviewer why."""
        cs.conflicts.append(
            ConflictNote(
                kind="invalid_value",
                table="inspections",
                record_id=insp["id"],
                column="occurrence_id",
                inspection_id=insp["id"],
                site_id=insp.get("site_id"),
                device_value=insp["occurrence_id"],
                detail=f"{problem}; the occurrence stays open: start its inspection from the "
                "occurrence itself, or clear occurrence_id for an unscheduled inspection",
            )
        )
        insp["has_conflicts"] = True

    # --- actions pushed by devices ----------------------------------------------------------

    def _action_evidence(
        self, session: Session, cs: ChangeSet
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Live evidence per action the push moves to `resolved` or `verified`, and how many
        of its photos are uploaded (a verifier looks at those: a signature shows no fix):
        attachments stored by earlier pushes, as this push leaves them, plus the ones it adds
        (one query)."""
        moving = [
            aid
            for aid in cs.device_changed.get("actions", {})
            if (cs.after["actions"].get(aid) or {}).get("status") in ("resolved", "verified")
        ]
        planned = cs.after.get("attachments", {})
        evidence: dict[str, int] = defaultdict(int)
        uploaded: dict[str, int] = defaultdict(int)
        if moving:
            stored = session.execute(
                select(
                    Attachment.id, Attachment.action_id, Attachment.uploaded, Attachment.kind
                ).where(
                    one_of(session, Attachment.action_id, moving),
                    Attachment.deleted_at.is_(None),
                )
            ).all()
            for att_id, action_id, sent, kind in stored:
                if att_id not in planned:  # a planned row is counted as the push leaves it
                    evidence[action_id] += 1
                    uploaded[action_id] += 1 if sent and kind == "photo" else 0
        for att in planned.values():
            if att.get("action_id") and att.get("deleted_at") is None:
                evidence[att["action_id"]] += 1
                seen = att.get("uploaded") and (att.get("kind") or "photo") == "photo"
                uploaded[att["action_id"]] += 1 if seen else 0
        return evidence, uploaded

    def _kept_action(self, cs: ChangeSet, before: Row) -> str | None:
        """Why a device may not delete this stored action, if it may not: the server opened
        it for a failed item (an inspector deleting it would leave the failure with no
        corrective action, and completing again opens none: never twice for one answer), or
        its fix is recorded (resolved or verified: reopen it first, as for its photos)."""
        if before.get("status") in ("resolved", "verified"):
            return f"the corrective action is {before['status']}; reopen it before deleting it"
        if before.get("source") == "auto" and cs.role == INSPECTOR:
            return "the server opened this corrective action for a failed item; it stays"
        return None

    def _action_links(self, session: Session, cs: ChangeSet) -> None:
        """A device's action links to an answer of its own inspection and to an active user
        who works at its site, as over REST (action_service._check_links); a link that does
        not stays as stored (none, if new) and an invalid_value conflict keeps the device's."""
        # A conflict, never a 422 that would leave the device pushing it forever; the action
        # itself is kept. Looked up together (one query per kind of link), not per action.
        actions = cs.after.get("actions", {})
        answers: dict[str, str] = {}
        assignees: dict[str, str] = {}
        for aid, changed in cs.device_changed.get("actions", {}).items():
            row = actions.get(aid)
            if row is None or row.get("deleted_at") is not None:
                continue
            if "response_id" in changed and row.get("response_id"):
                answers[aid] = row["response_id"]
            if "assignee_id" in changed and row.get("assignee_id"):
                assignees[aid] = row["assignee_id"]
        planned = cs.after.get("responses", {})
        missing = sorted(set(answers.values()) - planned.keys())
        stored = {r["id"]: r for r in _rows(session, Response, "id", missing)}
        for aid, rid in answers.items():
            iid = actions[aid].get("inspection_id")
            answer = planned.get(rid) or stored.get(rid)
            # An answer deleted meanwhile is still its inspection's: an action outlives its
            # answer, as stored ones do (push.answer_problem).
            if answer is None or answer.get("inspection_id") != iid:
                detail = "not an answer of the action's inspection; the action is kept without it"
                self._refuse_link(cs, aid, "response_id", detail)
        works = working_at(session, {(u, actions[a]["site_id"]) for a, u in assignees.items()})
        for aid, uid in assignees.items():
            if (uid, actions[aid]["site_id"]) not in works:
                detail = (
                    "no active user at the action's site; the action is kept without this assignee"
                )
                self._refuse_link(cs, aid, "assignee_id", detail)

    def _refuse_link(self, cs: ChangeSet, aid: str, column: str, detail: str) -> None:
        """Keep an action's link as stored (none, if new), the device's value in a conflict."""
        after = cs.after["actions"][aid]
        kept = (cs.before.get("actions", {}).get(aid) or {}).get(column)
        cs.conflicts.append(
            ConflictNote(
                kind="invalid_value",
                table="actions",
                record_id=aid,
                column=column,
                inspection_id=after.get("inspection_id"),
                site_id=after.get("site_id"),
                server_value=kept,
                device_value=after[column],
                detail=detail,
            )
        )
        after[column] = kept
        cs.bump("actions", aid)  # the device's copy converges on its next pull
        if after.get("inspection_id"):
            cs.recompute.add(after["inspection_id"])  # its has_conflicts flag

    def _device_actions(self, session: Session, cs: ChangeSet) -> None:
        gone = {
            iid
            for iid, row in cs.after.get("inspections", {}).items()
            if row.get("deleted_at") is not None
        }
        for aid, changed in list(cs.device_changed.get("actions", {}).items()):
            before = cs.before["actions"].get(aid)
            # An inspection deleted (where the locks let it be) takes its actions with it.
            alone = before and before.get("inspection_id") not in gone
            why = alone and "deleted_at" in changed and self._kept_action(cs, before)
            if why:
                iid = before.get("inspection_id")
                self._revert(cs, "actions", aid, "locked", why, iid)
                for att in self._deleted_evidence(cs, aid):  # its photos, deleted with it
                    self._revert(cs, "attachments", att, "locked", why, iid)
        evidence, uploaded = self._action_evidence(session, cs)
        for aid in list(cs.device_changed.get("actions", {})):
            after = cs.after["actions"].get(aid)
            if after is None:
                continue
            before = cs.before["actions"].get(aid)
            if before is None and after.get("due_at") is None:
                # Raised on the device without a due time: the default REST gives
                # (action_service.create), so it can fall overdue.
                after["due_at"] = self.policy.default_due_ms(
                    after.get("priority") or "medium", cs.now_ms
                )
            elif after.get("due_at") is None and before["due_at"] is not None:
                # A null is no due time given, never a cleared one (REST clears none): most
                # often a create pushed again after the first push's answer was lost, still
                # null where the server filled the default in. The device gets it back.
                after["due_at"] = before["due_at"]
                cs.bump("actions", aid)
            old = before["status"] if before else "open"
            new = after.get("status") or "open"
            if old == new:
                self._audit_device_action(cs, aid, before, after, None)
                continue
            try:
                action_rules.action_transition(
                    old,
                    new,
                    cs.role,
                    note=after.get("resolution_note"),
                    has_evidence=evidence[aid] > 0,
                    evidence_uploaded=uploaded[aid] > 0,
                )
            except action_rules.ActionRefused as exc:
                cs.conflicts.append(
                    ConflictNote(
                        kind="lifecycle",
                        table="actions",
                        record_id=aid,
                        column="status",
                        inspection_id=after.get("inspection_id"),
                        site_id=after.get("site_id"),
                        server_value=old,
                        device_value=new,
                        detail=exc.message,
                    )
                )
                after["status"] = old
                cs.bump("actions", aid)
                self._audit_device_action(cs, aid, before, after, None)  # its other edits
                continue
            self._device_move_effects(cs, aid, after, new)
            self._audit_device_action(cs, aid, before, after, (old, new))

    def _audit_device_action(
        self,
        cs: ChangeSet,
        aid: str,
        before: Row | None,
        after: Row,
        move: tuple[str, str] | None,
    ) -> None:
        """One audit event per action a device pushed: its creation, or its status move and
        edits together (old -> new), with the device the push came from (ChangeSet)."""
        if before is None:
            cs.audit.append(action_created(after))
            return
        changes: dict[str, Any] = {
            col: [_plain(before.get(col)), _plain(after.get(col))]
            for col in _ACTION_AUDITED
            if before.get(col) != after.get(col)
        }
        if move is not None:
            changes["status"] = list(move)
        if changes:
            action = "transition" if move is not None else "update"
            cs.audit.append(
                AuditNote("action", aid, action, changes, inspection_id=after.get("inspection_id"))
            )

    def _keep_fix_evidence(self, session: Session, cs: ChangeSet) -> None:
        """A resolved or verified action keeps the photos that evidence its fix: a device's
        deletion of one is refused as locked (reopening the action frees them)."""
        gone = cs.device_changed.get("attachments", {})
        deleted = [
            (rid, row)
            for rid, row in cs.after.get("attachments", {}).items()
            if row.get("action_id")
            and "deleted_at" in gone.get(rid, ())
            and cs.before.get("attachments", {}).get(rid) is not None
        ]
        if not deleted:
            return
        planned = cs.after.get("actions", {})
        missing = sorted({row["action_id"] for _, row in deleted} - set(planned))
        stored = {r["id"]: r for r in _rows(session, Action, "id", missing)}
        for rid, row in deleted:
            action = planned.get(row["action_id"]) or stored.get(row["action_id"])
            if action is None or action.get("deleted_at") is not None:
                continue  # the action goes too (or never was): nothing left to evidence
            status = action.get("status")
            if status in ("resolved", "verified"):
                detail = (
                    f"the corrective action is {status}; the photos evidencing its fix are "
                    "kept (reopen the action to replace them)"
                )
                self._revert(cs, "attachments", rid, "locked", detail, row.get("inspection_id"))

    def _device_move_effects(self, cs: ChangeSet, aid: str, after: Row, new: str) -> None:
        """What a status move records, the same as over REST (action_service.transition)."""
        if new == "resolved":
            after["resolved_at"] = dt.datetime.now(dt.UTC)
        elif new == "verified":
            after["verified_by"], after["verified_at"] = cs.user_id, cs.now_ms
            cs.bump("actions", aid)  # the device learns who verified
        elif new == "reopened":
            # The fix was not good enough: resolving again takes a new note.
            after.update(resolved_at=None, verified_by=None, verified_at=None)
            after["resolution_note"] = None
            cs.bump("actions", aid)


def _scoring_rank(response: Row, pushed: dict[str, set[str]]) -> tuple:
    """Where an answer ranks among the answers to its item: the highest is scored."""
    # Most recently received: changed in this push first; then the one scored so far (a
    # scored answer has `failed` set, the others lose it): its rev is no guide, as the
    # server's own update of the others' scores gives them newer revs.
    return (
        bool(pushed.get(response["id"])),
        response.get("failed") is not None,
        response.get("server_rev") or 0,
        response["id"],
    )


def scored_answers(responses: list[Row]) -> dict[str, Row]:
    """Per item, the stored live answer its score was computed from (of duplicates, the one
    scoring chose): the answer a reviewer, the report and the missing evidence must show."""
    chosen: dict[str, Row] = {}
    for resp in responses:
        held = chosen.get(resp["item_key"])
        if held is None or _scoring_rank(resp, {}) > _scoring_rank(held, {}):
            chosen[resp["item_key"]] = resp
    return chosen


def occurrence_links(session: Session, occ_ids: list[str], versions: list[str]) -> dict[str, Row]:
    """Per occurrence: its stored row and its template key, plus each of the template
    `versions` (those of the inspections naming it) sharing that key (one query)."""
    links: dict[str, Row] = {}
    if not occ_ids:
        return links
    scheduled = aliased(Version)
    run = aliased(Version)
    occ = Occurrence.__table__
    stmt = (
        select(occ, scheduled.template_key.label("_key"), run.id.label("_run"))
        .join(scheduled, scheduled.id == occ.c.template_id)
        .outerjoin(
            run,
            and_(run.template_key == scheduled.template_key, one_of(session, run.id, versions)),
        )
        .where(one_of(session, occ.c.id, occ_ids))
    )
    for found in session.execute(stmt).mappings():
        row = {k: v for k, v in found.items() if k not in ("_key", "_run")}
        link = links.setdefault(
            row["id"], {"id": row["id"], "row": row, "key": found["_key"], "runs": set()}
        )
        if found["_run"]:
            link["runs"].add(found["_run"])
    return links


def link_problem(insp: Row, link: Row | None, reworked: bool = False) -> str | None:
    """Why this inspection cannot fulfil the occurrence it names (its link from
    occurrence_links), or None when it can: the one rule for a completion and a return.
    `reworked`: it fulfilled the occurrence before it was returned for rework, so completing
    it again counts however late (it was done in time; the rework corrects it)."""
    if link is None:
        return "no such occurrence"
    occ = link["row"]
    if occ.get("deleted_at") is not None:
        return "the occurrence was withdrawn (its schedule stopped)"
    if occ["site_id"] != insp["site_id"]:
        return "the occurrence is at another site"
    if insp.get("template_id") not in link["runs"]:
        return f"the occurrence is for template {link['key']}; this inspection runs another one"
    if occ.get("assignee_id") not in (None, insp.get("inspector_id")):
        # Each assignee has an occurrence of their own per slot: this run counts for its own.
        return "the occurrence is another inspector's"
    if insp.get("completed_at") is None:
        return None
    # When the device completed it, not when the push arrived: a phone offline for days
    # still fulfils the occurrence it completed in time.
    done = dt.datetime.fromtimestamp(insp["completed_at"] / 1000, dt.UTC)
    opens, misses = _utc(occ.get("window_start")), _utc(occ.get("miss_at"))
    if opens is not None and done < opens - _CLOCK_SKEW:
        return (
            f"the occurrence's window opens at {opens:%Y-%m-%d %H:%M} UTC, after this "
            "inspection was completed"
        )
    if misses is not None and done > misses + _CLOCK_SKEW and not reworked:
        return (
            f"the occurrence was missed at {misses:%Y-%m-%d %H:%M} UTC, before this "
            "inspection was completed"
        )
    return None


# How far a phone's clock may be off the server's before a run completed just as an
# occurrence's window opens, or just before it is missed, reads as completed outside it.
_CLOCK_SKEW = dt.timedelta(minutes=10)


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (a naive one is UTC)."""
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)


def _reworked(session: Session, cs: ChangeSet, insp: Row, link: Row | None) -> bool:
    """Whether this run, returned for rework, fulfilled the occurrence before its return (the
    return's audit note says so; one lookup per returned run completed again)."""
    before = cs.before.get("inspections", {}).get(insp["id"]) or {}
    if link is None or before.get("review_state") != "returned":
        return False
    released = select(AuditEvent.id).where(
        AuditEvent.entity == "occurrence",
        AuditEvent.entity_id == link["id"],
        AuditEvent.action == "reopen",
        AuditEvent.inspection_id == insp["id"],
    )
    return session.execute(released.limit(1)).first() is not None


def _newly_linked(cs: ChangeSet, insp: Row) -> bool:
    """The link is news in this plan (just completed, or relinked), so worth a conflict once."""
    before = cs.before.get("inspections", {}).get(insp["id"]) or {}
    return before.get("status") not in ("completed", "approved") or before.get(
        "occurrence_id"
    ) != insp.get("occurrence_id")


def action_created(row: Row) -> AuditNote:
    """The audit event of a new action (raised on a device or over REST, or opened on
    completion)."""
    changes: dict[str, Any] = {
        col: [None, _plain(row.get(col))]
        for col in ("status", *_ACTION_AUDITED)
        if row.get(col) is not None
    }
    changes["title"] = [None, row.get("title")]
    changes["status"] = [None, row.get("status") or "open"]
    if row.get("source"):
        changes["source"] = row["source"]
    if row.get("response_id"):
        changes["response_id"] = row["response_id"]
    return AuditNote("action", row["id"], "create", changes, inspection_id=row.get("inspection_id"))


def _plain(value: Any) -> Any:
    """JSON-safe value for conflict and audit records."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
