"""Closed vocabularies shared by the store, the wire schemas and the domain rules."""

ROLES = ("inspector", "regional_manager", "hq")
INSPECTOR, REGIONAL_MANAGER, HQ = ROLES
REVIEWER_ROLES = (REGIONAL_MANAGER, HQ)

INSPECTION_STATUSES = ("draft", "in_progress", "completed", "returned", "approved", "archived")
# An inspection in one of these is locked against device changes (inspections/lifecycle.py).
LOCKED_STATUSES = frozenset({"completed", "approved", "archived"})
INSPECTION_MODES = ("scheduled", "spot_check", "self_check", "third_party", "mystery_shopper")
REVIEW_STATES = ("pending", "approved", "returned")

ATTACHMENT_KINDS = ("photo", "signature")
ACTION_STATUSES = ("open", "in_progress", "resolved", "verified", "reopened")
ACTION_PRIORITIES = ("low", "medium", "high", "critical")

OCCURRENCE_STATUSES = ("upcoming", "due", "overdue", "missed", "done")

CONFLICT_KINDS = (
    "out_of_scope",
    "locked",
    "lifecycle",
    "concurrent_edit",
    "duplicate_response",
    "invalid_value",
    "incomplete",
    "deleted_record",
    "invalid_parent",
)
