"""pre-rendered sync documents: on PostgreSQL every synced row keeps its wire JSON

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00

A pull sends each changed row as the JSON object a device stores. Rendering it once per write
instead of once per pull per device makes a page of a thousand rows one index read. The
document is a generated column, so every write path (sync, review, conflict resolution, raw
SQL) keeps it right without knowing it exists. SQLite renders pages in Python and gets none.
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# The wire columns of each table as of this revision (sync/tables.py; self-contained here so
# later code changes cannot change what this migration does). Templates carry a JSON column
# whose text PostgreSQL would not render as the Python path does: they stay in Python.
WIRE = {
    'sites': ('region_id', 'name', 'code', 'timezone', 'address'),
    'occurrences': (
        'schedule_id', 'template_id', 'site_id', 'assignee_id', 'window_start', 'due_at',
        'miss_at', 'status', 'inspection_id',
    ),
    'inspections': (
        'template_id', 'site_id', 'occurrence_id', 'area', 'mode', 'status', 'started_at',
        'completed_at', 'notes', 'latitude', 'longitude', 'inspector_id', 'score', 'max_score',
        'score_percent', 'grade', 'passed', 'critical_failed', 'media_complete', 'review_state',
        'review_comment', 'has_conflicts',
    ),
    'responses': (
        'inspection_id', 'item_key', 'value', 'note', 'answered_at', 'failed', 'item_score',
    ),
    'attachments': (
        'inspection_id', 'response_id', 'action_id', 'kind', 'sha256', 'mime', 'byte_size',
        'captured_at', 'latitude', 'longitude', 'signer_name', 'signer_role', 'signed_at',
        'signed_content_sha256', 'uploaded', 'width', 'height',
    ),
    'actions': (
        'inspection_id', 'response_id', 'site_id', 'title', 'description', 'priority',
        'assignee_id', 'due_at', 'status', 'resolution_note', 'created_by', 'verified_by',
        'verified_at',
    ),
}
# Timestamps travel as epoch milliseconds.
MILLISECONDS = {'occurrences': {'window_start', 'due_at', 'miss_at'}}


def _function(table: str, columns: tuple) -> str:
    names = ('id', 'server_rev', *columns)
    args = ', '.join(f'{table}.{c}%TYPE' for c in names)
    fields = ', '.join(
        f'floor(extract(epoch from ${n}) * 1000)::bigint AS {c}'
        if c in MILLISECONDS.get(table, ())
        else f'${n} AS {c}'
        for n, c in enumerate(names, start=1)
    )
    # IMMUTABLE, as a generated column needs: the output depends only on the arguments. Epoch
    # milliseconds do not depend on the time zone; floats would depend on the writer's
    # extra_float_digits, so the function pins it (shortest exact, as the Python path prints).
    return (
        f'CREATE FUNCTION sync_doc_{table}({args}) RETURNS text '
        f'LANGUAGE sql IMMUTABLE PARALLEL SAFE SET extra_float_digits = 1 '
        f'AS $$ SELECT row_to_json(d)::text FROM (SELECT {fields}) d $$'
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, columns in WIRE.items():
        op.execute(_function(table, columns))
        names = ', '.join(('id', 'server_rev', *columns))
        op.execute(
            f'ALTER TABLE {table} ADD COLUMN sync_doc text '
            f'GENERATED ALWAYS AS (sync_doc_{table}({names})) STORED'
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in WIRE:
        op.execute(f'ALTER TABLE {table} DROP COLUMN sync_doc')
        op.execute(f'DROP FUNCTION sync_doc_{table}')
