"""Corrective actions: the per-site ledger (JSON or CSV), raising, status moves, audit."""

from __future__ import annotations

from api import db
from api.blueprints.common import (
    csv_alternative,
    csv_response,
    documented,
    make_blueprint,
    page,
    wants_csv,
)
from api.security import current_scope, login_required
from inspections import action_service
from inspections.review import audit_trail
from org.paging import page_of
from schemas.actions import ActionIn, ActionOut, ActionQuery, TransitionIn
from schemas.inspections import AuditOut

blp = make_blueprint("actions", "/actions", "Corrective actions (整改)")

CSV_COLUMNS = (
    "id",
    "site_id",
    "inspection_id",
    "title",
    "priority",
    "status",
    "due_at",
    "overdue",
    "assignee_id",
    "resolution_note",
    "verified_by",
    "source",
)


@blp.route("")
@blp.arguments(ActionQuery, location="query")
@blp.response(200, ActionOut(many=True), description="JSON, or CSV with format=csv")
@csv_alternative(blp)
@blp.paginate()
@documented(blp, 401, 422)
@login_required
def ledger(query, pagination_parameters):
    """The corrective-action ledger in your scope; `format=csv` for a spreadsheet."""
    stmt = action_service.ledger(current_scope(), query)
    if wants_csv(query):
        rows = action_service.decorate(db.session(), list(db.session().execute(stmt).scalars()))
        pagination_parameters.item_count = len(rows)  # the CSV carries every row
        return csv_response(ActionOut(many=True).dump(rows), CSV_COLUMNS, "actions")
    return action_service.decorate(
        db.session(), page(pagination_parameters, lambda p, n: page_of(db.session(), stmt, p, n))
    )


@blp.route("", methods=["POST"])
@blp.arguments(ActionIn)
@blp.response(201, ActionOut)
@documented(blp, 401, 403, 422)
@login_required
def raise_action(body):
    """Raise a corrective action by hand."""
    action_id = action_service.create(db.session(), current_scope(), body)
    db.commit()
    return action_service.decorate(
        db.session(), [action_service.get(db.session(), current_scope(), action_id)]
    )[0]


@blp.route("/<action_id>")
@blp.response(200, ActionOut)
@documented(blp, 401, 404)
@login_required
def get_action(action_id):
    """Show an action with its evidence."""
    return action_service.decorate(
        db.session(), [action_service.get(db.session(), current_scope(), action_id)]
    )[0]


@blp.route("/<action_id>/transition", methods=["POST"])
@blp.arguments(TransitionIn)
@blp.response(200, ActionOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def transition(body, action_id):
    """Start, resolve (note + evidence), verify (managers, HQ) or reopen an action."""
    action = action_service.transition(
        db.session(), current_scope(), action_id, body["status"], body.get("note")
    )
    db.commit()
    return action_service.decorate(db.session(), [action])[0]


@blp.route("/<action_id>/audit")
@blp.response(200, AuditOut(many=True))
@documented(blp, 401, 404)
@login_required
def action_audit(action_id):
    """The action's audit trail."""
    action = action_service.get(db.session(), current_scope(), action_id)
    return audit_trail(db.session(), "action", action.id)


def blueprints():
    """This module's blueprints."""
    return [blp]
