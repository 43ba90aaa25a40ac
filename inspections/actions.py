"""Corrective actions (整改): opened for failed items, and their status rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from inspections.template_rules import iter_items
from store.enums import REVIEWER_ROLES

CLOSED = ("resolved", "verified")
_MOVES = {
    ("open", "in_progress"),
    ("open", "resolved"),
    ("in_progress", "resolved"),
    ("resolved", "verified"),
    ("resolved", "reopened"),
    ("reopened", "in_progress"),
    ("reopened", "resolved"),
    ("verified", "reopened"),
}


class ActionRefused(Exception):
    """A status move the rules do not allow."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ActionPolicy:
    """Due times by priority (the seeds' service limits); a critical item's action is 'high'
    priority but gets the critical due time."""

    due: dict[str, dt.timedelta] = field(
        default_factory=lambda: {
            "critical": dt.timedelta(hours=24),
            "high": dt.timedelta(hours=48),
            "medium": dt.timedelta(days=7),
            "low": dt.timedelta(days=14),
        }
    )

    def due_for(self, priority: str, critical: bool = False) -> dt.timedelta:
        """How long an action of this priority may stay open."""
        return self.due["critical" if critical else priority]

    def default_due_ms(self, priority: str, received_ms: int) -> int:
        """When an action raised without a due time falls due: its priority's limit from when
        the server received it (epoch ms), over REST and sync alike."""
        # Received, not raised: the wire carries no time an action was raised, and a device's
        # clock is never trusted for deadlines; opened actions count from the server's receipt
        # of the completion too.
        return received_ms + int(self.due_for(priority).total_seconds() * 1000)


@dataclass
class ActionDraft:
    """An action to open for a failed item."""

    item_key: str
    title: str
    description: str
    priority: str
    due_at: dt.datetime


def actions_for_failed_items(
    result: Any, body: dict[str, Any], *, completed_at: dt.datetime, policy: ActionPolicy
) -> list[ActionDraft]:
    """One draft per failed item: high priority (24 h) for critical items, else medium (7 d)."""
    failed = set(result.failed_items)
    drafts = []
    for section, item in iter_items(body):
        if item["key"] not in failed:
            continue
        critical = bool(item.get("critical"))
        priority = "high" if critical else "medium"
        label = item.get("label") or {}
        title = f"{label.get('zh', '')} / {label.get('en', '')}".strip(" /")[:300]
        section_title = (section.get("title") or {}).get("en", section["key"])
        drafts.append(
            ActionDraft(
                item_key=item["key"],
                title=title or item["key"],
                description=f"Failed item {item['key']} in section {section_title}",
                priority=priority,
                due_at=completed_at + policy.due_for(priority, critical=critical),
            )
        )
    return drafts


def action_transition(
    current: str,
    target: str,
    role: str,
    *,
    note: str | None,
    has_evidence: bool,
    evidence_uploaded: bool = False,
) -> None:
    """Allow or refuse an action's status move (`has_evidence`: it has live photos;
    `evidence_uploaded`: the bytes of one of them are on the server)."""
    if current == target:
        return
    if (current, target) not in _MOVES:
        raise ActionRefused(
            "invalid_transition", f"An action cannot go from {current} to {target}."
        )
    if target == "resolved":
        if not (note or "").strip():
            raise ActionRefused("note_required", "Resolving needs a note saying what was done.")
        if not has_evidence:
            raise ActionRefused(
                "evidence_required", "Resolving needs evidence: attach a photo to the action."
            )
    if target in ("verified", "reopened") and current in CLOSED and role not in REVIEWER_ROLES:
        raise ActionRefused("wrong_role", "Only regional managers and HQ verify or reopen.")
    if target == "verified" and not evidence_uploaded:
        # A photo resolved offline arrives after its record: verifying before it does would
        # vouch for a fix nobody could see.
        raise ActionRefused(
            "evidence_not_uploaded",
            "Verifying needs a photo of the fix to look at: none of this action's photos has "
            "been uploaded yet. Verify once the device has sent it.",
        )


def is_overdue(status: str, due_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Past due and not resolved or verified."""
    return due_at is not None and now > due_at and status not in CLOSED
