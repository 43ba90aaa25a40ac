"""Checklist templates: everyone reads published versions, HQ drafts and publishes."""

from __future__ import annotations

from api import db
from api.blueprints.common import documented, make_blueprint, page
from api.security import current_scope, login_required
from org import catalog
from schemas.templates import (
    TemplateIn,
    TemplateOut,
    TemplatePatch,
    TemplateQuery,
    VersionBrief,
    VersionOut,
)

blp = make_blueprint("templates", "/templates", "Checklist templates and their versions")
versions = make_blueprint("template_versions", "/template-versions", "Published versions")


@blp.route("")
@blp.arguments(TemplateQuery, location="query")
@blp.response(200, TemplateOut(many=True))
@blp.paginate()
@documented(blp, 401, 422)
@login_required
def list_templates(query, pagination_parameters):
    """List templates (published ones; HQ may include drafts)."""
    return page(
        pagination_parameters,
        lambda p, n: catalog.list_templates(
            db.session(), current_scope(), p, n, include_drafts=query["include_drafts"]
        ),
    )


@blp.route("", methods=["POST"])
@blp.arguments(TemplateIn)
@blp.response(201, TemplateOut)
@documented(blp, 401, 403, 422)
@login_required
def create_template(body):
    """Start a template draft (HQ)."""
    t = catalog.create_draft(db.session(), current_scope(), body)
    db.commit()
    return t


@blp.route("/<template_id>")
@blp.response(200, TemplateOut)
@documented(blp, 401, 404)
@login_required
def get_template(template_id):
    """Show a template with its current draft body."""
    return catalog.get_template(db.session(), current_scope(), template_id)


@blp.route("/<template_id>", methods=["PATCH"])
@blp.arguments(TemplatePatch)
@blp.response(200, TemplateOut)
@documented(blp, 401, 403, 404, 422)
@login_required
def update_template(body, template_id):
    """Edit the draft (HQ); published versions are never changed."""
    t = catalog.update_draft(db.session(), current_scope(), template_id, body)
    db.commit()
    return t


@blp.route("/<template_id>/publish", methods=["POST"])
@blp.response(201, VersionOut)
@documented(blp, 401, 403, 404, 409, 422)
@login_required
def publish_template(template_id):
    """Validate the draft and publish it as a new immutable version (HQ)."""
    version = catalog.publish(db.session(), current_scope(), template_id)
    db.commit()
    return version


@blp.route("/<template_id>/versions")
@blp.response(200, VersionBrief(many=True))
@documented(blp, 401, 404)
@login_required
def list_versions(template_id):
    """List a template's published versions, newest first."""
    return catalog.list_versions(db.session(), current_scope(), template_id)


@versions.route("/<version_id>")
@versions.response(200, VersionOut)
@documented(versions, 401, 404)
@login_required
def get_version(version_id):
    """Show one published version with its full body."""
    return catalog.get_version(db.session(), version_id)


def blueprints():
    """This module's blueprints."""
    return [blp, versions]
