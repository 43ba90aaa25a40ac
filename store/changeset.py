"""A transaction's planned changes, held in memory as plain dicts before anything is written.

The sync engine fills it from a push (and REST from a request); domain rules read and amend it
(scores, lifecycle, conflicts, new actions); then the writer turns the differences between
`before` and `after` into bulk INSERTs and UPDATEs. Keeping the plan in memory is what lets a
3000-row push cost a handful of statements instead of one per row.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass
class ConflictNote:
    """A refused or overwritten device value, to be stored as a conflict record."""

    kind: str
    table: str
    record_id: str
    detail: str
    inspection_id: str | None = None
    site_id: str | None = None
    column: str | None = None
    server_value: Any = None
    device_value: Any = None

    def wire(self) -> dict[str, Any]:
        """How a push response lists it."""
        return {
            "kind": self.kind,
            "table": self.table,
            "id": self.record_id,
            "column": self.column,
            "detail": self.detail,
        }


@dataclass
class AuditNote:
    """One entry for the audit trail."""

    entity: str
    entity_id: str
    action: str
    changes: dict[str, Any]
    inspection_id: str | None = None


@dataclass
class ChangeSet:
    """Rows before and after this transaction, per table, keyed by id."""

    user_id: str
    role: str
    device_id: str | None
    now_ms: int
    before: dict[str, dict[str, Row | None]] = field(default_factory=dict)
    after: dict[str, dict[str, Row]] = field(default_factory=dict)
    # Rows whose rev must move even without a column change (so devices revert or converge).
    bumps: dict[str, set[str]] = field(default_factory=dict)
    # Columns the device changed (as opposed to the server), for audit and conflicts. Rows
    # created together may share one set: replace a row's set to change it, never add to it.
    device_changed: dict[str, dict[str, AbstractSet[str]]] = field(default_factory=dict)
    conflicts: list[ConflictNote] = field(default_factory=list)
    audit: list[AuditNote] = field(default_factory=list)
    # Inspections whose derived columns must be recomputed even if nothing of theirs changed.
    recompute: set[str] = field(default_factory=set)

    def table(self, name: str) -> dict[str, Row]:
        """The `after` rows of a table."""
        return self.after.setdefault(name, {})

    def add_context(self, name: str, row: Row) -> Row:
        """Bring an existing row into the plan (unchanged unless a rule changes it)."""
        rows = self.table(name)
        if row["id"] not in rows:
            self.before.setdefault(name, {})[row["id"]] = dict(row)
            rows[row["id"]] = dict(row)
        return rows[row["id"]]

    def add_new(self, name: str, row: Row) -> Row:
        """Plan a new row."""
        self.before.setdefault(name, {})[row["id"]] = None
        self.table(name)[row["id"]] = row
        return row

    def bump(self, name: str, record_id: str) -> None:
        """Move a row's rev even if nothing changes."""
        self.bumps.setdefault(name, set()).add(record_id)

    def is_new(self, name: str, record_id: str) -> bool:
        """True when the row did not exist before this transaction."""
        return self.before.get(name, {}).get(record_id) is None

    def changed_columns(self, name: str, record_id: str) -> list[str]:
        """Columns whose value differs between before and after."""
        before = self.before.get(name, {}).get(record_id)
        after = self.after.get(name, {}).get(record_id)
        if after is None:
            return []
        if before is None:
            return list(after)
        return [k for k, v in after.items() if before.get(k) != v]
