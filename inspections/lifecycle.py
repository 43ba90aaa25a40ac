"""Inspection lifecycle: draft -> in_progress -> completed -> approved; completed -> returned ->
in_progress; archived for HQ. Completed and approved inspections are locked against devices."""

from __future__ import annotations

from store.enums import HQ, LOCKED_STATUSES, REVIEWER_ROLES

LOCKED = LOCKED_STATUSES

# (from, to) -> who may make the move, and through which door.
_DEVICE_MOVES = {
    ("draft", "in_progress"),
    ("draft", "completed"),
    ("in_progress", "completed"),
    ("returned", "in_progress"),
    ("returned", "completed"),
    ("in_progress", "draft"),
}
_REVIEW_MOVES = {("completed", "approved"), ("completed", "returned")}


class TransitionRefused(Exception):
    """A status change the rules do not allow."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def is_locked(status: str | None) -> bool:
    """Devices may not change a completed, approved or archived inspection."""
    return status in LOCKED


def transition(current: str, target: str, role: str, *, via: str) -> None:
    """Allow or refuse a move; via is 'device' (sync) or 'review' (REST)."""
    if current == target:
        return
    if target == "archived":
        if role != HQ:
            raise TransitionRefused("wrong_role", "Only HQ archives inspections.")
        return
    if via == "device":
        if (current, target) in _DEVICE_MOVES:
            return
        if target in ("approved", "returned"):
            raise TransitionRefused(
                "review_only", f"A device cannot set '{target}': that is a review decision."
            )
        raise TransitionRefused(
            "invalid_transition", f"An inspection cannot go from {current} to {target}."
        )
    if (current, target) in _REVIEW_MOVES:
        if role not in REVIEWER_ROLES:
            raise TransitionRefused(
                "wrong_role", "Only regional managers and HQ approve or return."
            )
        return
    raise TransitionRefused(
        "invalid_transition",
        f"An inspection that is {current} cannot be {target}; "
        "only completed inspections are reviewed.",
    )
