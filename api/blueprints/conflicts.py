"""Sync conflicts for regional managers and HQ: list, show both values, resolve."""

from __future__ import annotations

from api import db
from api.blueprints.common import documented, make_blueprint, page
from api.rules import sync_rules
from api.security import current_scope, login_required
from org.paging import page_of
from schemas.conflicts import ConflictOut, ConflictQuery, ResolveIn
from sync import conflicts

blp = make_blueprint("conflicts", "/conflicts", "Sync conflicts (managers and HQ)")


def _with_current(conflict):
    record = conflicts.current_record(db.session(), conflict)
    conflict.current_value = (
        (record or {}).get(conflict.column)
        if conflict.column
        else (
            None
            if record is None
            else {
                k: v
                for k, v in record.items()
                if k not in ("col_revs", "created_at", "updated_at", "deleted_at")
            }
        )
    )
    return conflict


@blp.route("")
@blp.arguments(ConflictQuery, location="query")
@blp.response(200, ConflictOut(many=True))
@blp.paginate()
@documented(blp, 401, 403, 422)
@login_required
def list_conflicts(query, pagination_parameters):
    """List conflicts in your scope, newest first (unresolved by default)."""
    stmt = conflicts.query(current_scope(), query)
    items = page(pagination_parameters, lambda p, n: page_of(db.session(), stmt, p, n))
    return [_with_current(c) for c in items]


@blp.route("/<conflict_id>")
@blp.response(200, ConflictOut)
@documented(blp, 401, 403, 404)
@login_required
def get_conflict(conflict_id):
    """Show a conflict: the device's value, the server's, and the record's current value."""
    return _with_current(conflicts.get(db.session(), current_scope(), conflict_id))


@blp.route("/<conflict_id>/resolve", methods=["POST"])
@blp.arguments(ResolveIn)
@blp.response(200, ConflictOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def resolve_conflict(body, conflict_id):
    """Keep the server's value, take the device's, or write an edited one."""
    row = conflicts.resolve(
        db.session(),
        current_scope(),
        conflict_id,
        body["resolution"],
        body.get("value"),
        sync_rules(),
    )
    db.commit()
    return _with_current(row)


def blueprints():
    """This module's blueprints."""
    return [blp]
