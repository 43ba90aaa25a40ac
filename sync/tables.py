"""The sync wire contract: which tables and columns a device sees and may write."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Table

from store.enums import ACTION_PRIORITIES, ACTION_STATUSES, ATTACHMENT_KINDS, INSPECTION_MODES
from store.enums import INSPECTION_STATUSES as STATUSES
from store.models import (
    Action,
    Attachment,
    Inspection,
    Occurrence,
    Response,
    Site,
    TemplateVersion,
)


@dataclass(frozen=True)
class Col:
    """A wire column: its type and limits. kind: str, id, text, int, ms, float, bool, json."""

    kind: str
    max_len: int = 0
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    # False for a NOT NULL column: a device may not set it to null or ''.
    nullable: bool = True
    # A created record must carry it: the server has no default of its own (sync/push.py).
    required: bool = False


# The ranges of the database's integer columns, so an oversized number is refused up front
# instead of overflowing in the driver.
INT32 = 2**31 - 1
# BigInteger holds 2^63 - 1, but devices count in JavaScript numbers: beyond 2^53 they are
# no longer exact, so no honest device sends more.
SAFE_INT = 2**53 - 1

STR = Col("str", 200)
ID = Col("id")
MS = Col("ms")
TEXT = Col("text", 20_000)
FLOAT = Col("float")
BOOL = Col("bool")
INT = Col("int", lo=-INT32 - 1, hi=INT32)
# NOT NULL ids a created record must name itself.
REQUIRED_ID = Col("id", nullable=False, required=True)


@dataclass(frozen=True)
class TableSpec:
    """One synced table."""

    name: str
    model: type
    columns: dict[str, Col]
    writable: frozenset[str] = frozenset()
    # Columns the server computes; a device's values are ignored (never applied).
    server_owned: frozenset[str] = frozenset()
    # Device-generated tables can be pushed; others are read-only on the device.
    pushable: bool = False
    # Children tombstoned with a parent: (table, foreign-key column).
    children: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def table(self) -> Table:
        """The SQLAlchemy table."""
        return self.model.__table__

    @property
    def wire_columns(self) -> tuple[str, ...]:
        """Every column a pulled record carries besides id and server_rev."""
        return tuple(self.columns)


SITES = TableSpec(
    "sites",
    Site,
    {"region_id": ID, "name": STR, "code": STR, "timezone": STR, "address": Col("str", 500)},
)
TEMPLATES = TableSpec(
    "templates",
    TemplateVersion,
    {
        "template_key": STR,
        "version": INT,
        "category": STR,
        "title_zh": STR,
        "title_en": STR,
        "pass_threshold": FLOAT,
        "body": Col("json"),
    },
)
OCCURRENCES = TableSpec(
    "occurrences",
    Occurrence,
    {
        "schedule_id": ID,
        "template_id": ID,
        "site_id": ID,
        "assignee_id": ID,
        "window_start": MS,
        "due_at": MS,
        "miss_at": MS,
        "status": STR,
        "inspection_id": ID,
    },
)
_INSPECTION_DEVICE = {
    "template_id": REQUIRED_ID,
    "site_id": REQUIRED_ID,
    "occurrence_id": ID,
    "area": STR,
    "mode": Col("str", 32, INSPECTION_MODES),
    "status": Col("str", 32, STATUSES, nullable=False),
    "started_at": MS,
    "completed_at": MS,
    "notes": TEXT,
    "latitude": Col("float", lo=-90, hi=90),
    "longitude": Col("float", lo=-180, hi=180),
}
_INSPECTION_SERVER = {
    "inspector_id": ID,
    "score": FLOAT,
    "max_score": FLOAT,
    "score_percent": FLOAT,
    "grade": STR,
    "passed": BOOL,
    "critical_failed": BOOL,
    "media_complete": BOOL,
    "review_state": STR,
    "review_comment": TEXT,
    "has_conflicts": BOOL,
}
INSPECTIONS = TableSpec(
    "inspections",
    Inspection,
    {**_INSPECTION_DEVICE, **_INSPECTION_SERVER},
    writable=frozenset(_INSPECTION_DEVICE),
    server_owned=frozenset(_INSPECTION_SERVER),
    pushable=True,
    children=(
        ("responses", "inspection_id"),
        ("attachments", "inspection_id"),
        ("actions", "inspection_id"),
    ),
)
_RESPONSE_DEVICE = {
    "inspection_id": REQUIRED_ID,
    "item_key": Col("str", 64, nullable=False, required=True),
    "value": Col("text", 20_000),
    "note": TEXT,
    "answered_at": MS,
}
_RESPONSE_SERVER = {"failed": BOOL, "item_score": FLOAT}
RESPONSES = TableSpec(
    "responses",
    Response,
    {**_RESPONSE_DEVICE, **_RESPONSE_SERVER},
    writable=frozenset(_RESPONSE_DEVICE),
    server_owned=frozenset(_RESPONSE_SERVER),
    pushable=True,
    children=(("attachments", "response_id"),),
)
_ATTACHMENT_DEVICE = {
    "inspection_id": ID,
    "response_id": ID,
    "action_id": ID,
    "kind": Col("str", 16, ATTACHMENT_KINDS, nullable=False),
    "sha256": Col("str", 64),
    "mime": Col("str", 100),
    "byte_size": Col("int", lo=0, hi=SAFE_INT),
    "captured_at": MS,
    "latitude": Col("float", lo=-90, hi=90),
    "longitude": Col("float", lo=-180, hi=180),
    "signer_name": STR,
    "signer_role": Col("str", 100),
    "signed_at": MS,
    "signed_content_sha256": Col("str", 64),
}
_ATTACHMENT_SERVER = {"uploaded": BOOL, "width": INT, "height": INT}
ATTACHMENTS = TableSpec(
    "attachments",
    Attachment,
    {**_ATTACHMENT_DEVICE, **_ATTACHMENT_SERVER},
    writable=frozenset(_ATTACHMENT_DEVICE),
    server_owned=frozenset(_ATTACHMENT_SERVER),
    pushable=True,
)
_ACTION_DEVICE = {
    "inspection_id": ID,
    "response_id": ID,
    "site_id": Col("id", nullable=False),
    "title": Col("str", 300, nullable=False),
    "description": TEXT,
    "priority": Col("str", 16, ACTION_PRIORITIES, nullable=False),
    "assignee_id": ID,
    "due_at": MS,
    "status": Col("str", 16, ACTION_STATUSES, nullable=False),
    "resolution_note": TEXT,
}
_ACTION_SERVER = {"created_by": ID, "verified_by": ID, "verified_at": MS}
ACTIONS = TableSpec(
    "actions",
    Action,
    {**_ACTION_DEVICE, **_ACTION_SERVER},
    writable=frozenset(_ACTION_DEVICE),
    server_owned=frozenset(_ACTION_SERVER),
    pushable=True,
    # The photos that evidence a fix go with their action.
    children=(("attachments", "action_id"),),
)

# Pull order: parents before children, so a client applying a page in order never
# holds a child whose parent it has not seen.
TABLES: dict[str, TableSpec] = {
    t.name: t for t in (SITES, TEMPLATES, OCCURRENCES, INSPECTIONS, RESPONSES, ATTACHMENTS, ACTIONS)
}
PUSHABLE = {name: spec for name, spec in TABLES.items() if spec.pushable}
# Wire columns accepted in a push besides the table's own: WatermelonDB bookkeeping.
CLIENT_META = frozenset({"id", "_status", "_changed", "server_rev", "base_rev"})

# The columns that place a record: its site and its parents. A device cannot move an existing
# record (scope is checked where a record is, and children carry their inspection's site).
PLACEMENT = {
    "inspections": ("site_id",),
    "responses": ("inspection_id",),
    "attachments": ("inspection_id", "action_id"),
    "actions": ("inspection_id", "site_id"),
}
# What an attachment's verified bytes are: fixed once the upload is complete (a push changing
# them would point the record at other bytes, someone else's or none).
UPLOADED_CONTENT = ("sha256", "byte_size", "mime")
