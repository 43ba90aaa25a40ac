"""Review of inspections: the queue, the full view, approve and return, the audit trail."""

from __future__ import annotations

from api import db
from api.blueprints.common import binary_content, documented, make_blueprint, page
from api.downloads import inspection_report
from api.rules import sync_rules
from api.security import current_scope, login_required
from inspections import review
from org.paging import page_of
from schemas.inspections import (
    ApproveIn,
    AuditOut,
    InspectionDetailOut,
    InspectionOut,
    InspectionQuery,
    ReturnIn,
)

blp = make_blueprint("inspections", "/inspections", "Inspections and their review")


@blp.route("")
@blp.arguments(InspectionQuery, location="query")
@blp.response(200, InspectionOut(many=True))
@blp.paginate()
@documented(blp, 401, 403, 422)
@login_required
def review_queue(query, pagination_parameters):
    """The review queue: completed inspections in your region, newest first."""
    stmt = review.queue(current_scope(), query)
    return page(pagination_parameters, lambda p, n: page_of(db.session(), stmt, p, n))


@blp.route("/<inspection_id>")
@blp.response(200, InspectionDetailOut)
@documented(blp, 401, 404)
@login_required
def get_inspection(inspection_id):
    """An inspection with answers (failed first), evidence, signatures, conflicts, audit."""
    return review.detail(db.session(), current_scope(), inspection_id)


@blp.route("/<inspection_id>/approve", methods=["POST"])
@blp.arguments(ApproveIn)
@blp.response(200, InspectionOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def approve(body, inspection_id):
    """Approve a completed inspection (regional managers and HQ)."""
    insp = review.decide(
        db.session(), current_scope(), sync_rules(), inspection_id, "approve", body.get("comment")
    )
    db.commit()
    return insp


@blp.route("/<inspection_id>/return", methods=["POST"])
@blp.arguments(ReturnIn)
@blp.response(200, InspectionOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def return_for_rework(body, inspection_id):
    """Return a completed inspection for rework; the comment reaches the device."""
    insp = review.decide(
        db.session(), current_scope(), sync_rules(), inspection_id, "return", body["comment"]
    )
    db.commit()
    return insp


@blp.route("/<inspection_id>/complete", methods=["POST"])
@blp.response(200, InspectionOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def complete(inspection_id):
    """Complete an inspection (its inspector); unanswered required items are named (422)."""
    insp = review.complete(db.session(), current_scope(), sync_rules(), inspection_id)
    db.commit()
    return insp


@blp.route("/<inspection_id>/archive", methods=["POST"])
@blp.response(200, InspectionOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def archive(inspection_id):
    """Archive an inspection (HQ)."""
    insp = review.decide(
        db.session(), current_scope(), sync_rules(), inspection_id, "archive", None
    )
    db.commit()
    return insp


@blp.route("/<inspection_id>/audit")
@blp.response(200, AuditOut(many=True))
@documented(blp, 401, 404)
@login_required
def audit(inspection_id):
    """The inspection's audit trail, oldest first."""
    insp = review.get_inspection(db.session(), current_scope(), inspection_id)
    return review.audit_trail(db.session(), "inspection", insp.id)


@blp.route("/<inspection_id>/report.pdf")
@blp.response(200, description="The inspection report as PDF", content_type="application/pdf")
@binary_content(blp, "application/pdf")
@documented(blp, 401, 404)
@login_required
def report_pdf(inspection_id):
    """The inspection report as PDF: header, answers by section, photos, signatures, actions."""
    return inspection_report(current_scope(), inspection_id)


def blueprints():
    """This module's blueprints."""
    return [blp]
