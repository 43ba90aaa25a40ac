"""inspections archived while not done stop counting as completed

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 09:00:00

Reports and the rollups count an archived inspection by its completion time. Until the release
of 2026-11-27, archiving an inspection returned for rework (or back in progress) kept the
completion time it had from before it was returned, so it went on counting as completed, with
its failing items. The app now clears that time when it archives an inspection that is not
completed or approved (inspections/review.py); this clears it on those archived earlier. The
status an inspection was archived from is in the audit trail: the 'archive' event's status
change, [old, 'archived']. An archived inspection with no such event is left as it is. Then both
rollups are rebuilt, by the 0005 migration's own rebuild (the counting rule is unchanged since).
Running it again changes nothing. Nothing is sent to devices: the completion time the server
received is not a synced column.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Self-contained (no application imports), as every migration here.
DONE = ("completed", "approved")
INSPECTIONS = sa.table(
    "inspections",
    sa.column("id"),
    sa.column("status"),
    sa.column("completed_received_at", sa.DateTime(timezone=True)),
)
AUDIT = sa.table(
    "audit_events",
    sa.column("id"),
    sa.column("entity"),
    sa.column("entity_id"),
    sa.column("action"),
    sa.column("changes", sa.JSON()),
)
CHUNK = 500


def _archived_from(conn: sa.Connection, ids: list[str]) -> dict[str, object]:
    """Per inspection, the status its last 'archive' event says it was archived from."""
    events = conn.execute(
        sa.select(AUDIT.c.entity_id, AUDIT.c.changes)
        .where(
            AUDIT.c.entity == "inspection",
            AUDIT.c.action == "archive",
            AUDIT.c.entity_id.in_(ids),
        )
        .order_by(AUDIT.c.id)  # append-only: the last row of an inspection is its last event
    )
    found: dict[str, object] = {}
    for entity_id, changes in events:
        status = changes.get("status") if isinstance(changes, dict) else None
        if isinstance(status, list) and len(status) == 2:
            found[entity_id] = status[0]
    return found


def _rebuild_rollups() -> None:
    """Both rollups from scratch, by the 0005 migration's rebuild."""
    path = Path(__file__).with_name("0005_local_day_rollups.py")
    spec = importlib.util.spec_from_file_location("rollups_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade()


def upgrade() -> None:
    conn = op.get_bind()
    archived = list(
        conn.execute(
            sa.select(INSPECTIONS.c.id).where(
                INSPECTIONS.c.status == "archived",
                INSPECTIONS.c.completed_received_at.is_not(None),
            )
        ).scalars()
    )
    undone = []
    for start in range(0, len(archived), CHUNK):
        found = _archived_from(conn, archived[start : start + CHUNK])
        undone.extend(i for i, old in found.items() if old not in DONE)
    if not undone:
        return
    for start in range(0, len(undone), CHUNK):
        conn.execute(
            sa.update(INSPECTIONS)
            .where(INSPECTIONS.c.id.in_(undone[start : start + CHUNK]))
            .values(completed_received_at=None)
        )
    _rebuild_rollups()


def downgrade() -> None:
    """Nothing to undo: the completion times cleared were those of work not done."""
