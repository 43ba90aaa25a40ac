"""Organisation admin: regions, sites, users, site assignments (HQ writes, scoped reads)."""

from __future__ import annotations

from api import db
from api.blueprints.common import documented, make_blueprint, page
from api.security import current_scope, hash_password, login_required
from org import admin
from schemas.org import (
    AssignmentIn,
    AssignmentOut,
    AssignmentQuery,
    RegionIn,
    RegionOut,
    RegionPatch,
    SiteIn,
    SiteOut,
    SitePatch,
    SiteQuery,
    UserIn,
    UserOut,
    UserPatch,
    UserQuery,
)

regions = make_blueprint("regions", "/regions", "Regions (HQ manages)")
sites = make_blueprint("sites", "/sites", "Sites (HQ manages; everyone reads their own)")
users = make_blueprint("users", "/users", "Users (HQ manages)")
assignments = make_blueprint("assignments", "/assignments", "Inspector site assignments")


# --- regions ---------------------------------------------------------------------------


@regions.route("")
@regions.response(200, RegionOut(many=True))
@regions.paginate()
@documented(regions, 401)
@login_required
def list_regions(pagination_parameters):
    """List the regions you can see."""
    return page(
        pagination_parameters, lambda p, n: admin.list_regions(db.session(), current_scope(), p, n)
    )


@regions.route("", methods=["POST"])
@regions.arguments(RegionIn)
@regions.response(201, RegionOut)
@documented(regions, 401, 403, 422)
@login_required
def create_region(body):
    """Create a region (HQ)."""
    region = admin.create_region(db.session(), current_scope(), body)
    db.commit()
    return region


@regions.route("/<region_id>")
@regions.response(200, RegionOut)
@documented(regions, 401, 404)
@login_required
def get_region(region_id):
    """Show a region."""
    return admin.get_region(db.session(), current_scope(), region_id)


@regions.route("/<region_id>", methods=["PATCH"])
@regions.arguments(RegionPatch)
@regions.response(200, RegionOut)
@documented(regions, 401, 403, 404, 422)
@login_required
def update_region(body, region_id):
    """Change a region (HQ)."""
    region = admin.update_region(db.session(), current_scope(), region_id, body)
    db.commit()
    return region


@regions.route("/<region_id>", methods=["DELETE"])
@regions.response(204)
@documented(regions, 401, 403, 404, 422)
@login_required
def delete_region(region_id):
    """Delete an empty region (HQ)."""
    admin.delete_region(db.session(), current_scope(), region_id)
    db.commit()


# --- sites ------------------------------------------------------------------------------


@sites.route("")
@sites.arguments(SiteQuery, location="query")
@sites.response(200, SiteOut(many=True))
@sites.paginate()
@documented(sites, 401, 422)
@login_required
def list_sites(query, pagination_parameters):
    """List the sites in your scope."""
    return page(
        pagination_parameters,
        lambda p, n: admin.list_sites(
            db.session(), current_scope(), p, n, region_id=query.get("region_id")
        ),
    )


@sites.route("", methods=["POST"])
@sites.arguments(SiteIn)
@sites.response(201, SiteOut)
@documented(sites, 401, 403, 422)
@login_required
def create_site(body):
    """Open a site (HQ)."""
    site = admin.create_site(db.session(), current_scope(), body)
    db.commit()
    return site


@sites.route("/<site_id>")
@sites.response(200, SiteOut)
@documented(sites, 401, 404)
@login_required
def get_site(site_id):
    """Show a site in your scope."""
    return admin.get_site(db.session(), current_scope(), site_id)


@sites.route("/<site_id>", methods=["PATCH"])
@sites.arguments(SitePatch)
@sites.response(200, SiteOut)
@documented(sites, 401, 403, 404, 422)
@login_required
def update_site(body, site_id):
    """Change a site (HQ)."""
    site = admin.update_site(db.session(), current_scope(), site_id, body)
    db.commit()
    return site


@sites.route("/<site_id>", methods=["DELETE"])
@sites.response(204)
@documented(sites, 401, 403, 404)
@login_required
def delete_site(site_id):
    """Close a site (HQ); devices receive it as a deletion and its schedules stop."""
    admin.delete_site(db.session(), current_scope(), site_id)
    db.commit()


# --- users ------------------------------------------------------------------------------


@users.route("")
@users.arguments(UserQuery, location="query")
@users.response(200, UserOut(many=True))
@users.paginate()
@documented(users, 401, 422)
@login_required
def list_users(query, pagination_parameters):
    """List users you can see (HQ: all; managers: their region and its sites' inspectors;
    inspectors: themselves)."""
    return page(
        pagination_parameters,
        lambda p, n: admin.list_users(db.session(), current_scope(), p, n, query),
    )


@users.route("", methods=["POST"])
@users.arguments(UserIn)
@users.response(201, UserOut)
@documented(users, 401, 403, 422)
@login_required
def create_user(body):
    """Add a user (HQ)."""
    current_scope().require_role("hq")
    user = admin.create_user(db.session(), current_scope(), body, hash_password(body["password"]))
    db.commit()
    return user


@users.route("/<user_id>")
@users.response(200, UserOut)
@documented(users, 401, 404)
@login_required
def get_user(user_id):
    """Show a user."""
    return admin.get_user(db.session(), current_scope(), user_id)


@users.route("/<user_id>", methods=["PATCH"])
@users.arguments(UserPatch)
@users.response(200, UserOut)
@documented(users, 401, 403, 404, 409, 422)
@login_required
def update_user(body, user_id):
    """Change a user: role, region, password, or deactivate (HQ); sign-ins end on the last two."""
    current_scope().require_role("hq")
    hashed = hash_password(body["password"]) if body.get("password") else None
    user = admin.update_user(db.session(), current_scope(), user_id, body, hashed)
    db.commit()
    return user


# --- assignments ------------------------------------------------------------------------


@assignments.route("")
@assignments.arguments(AssignmentQuery, location="query")
@assignments.response(200, AssignmentOut(many=True))
@assignments.paginate()
@documented(assignments, 401, 422)
@login_required
def list_assignments(query, pagination_parameters):
    """List live site assignments in your scope."""
    return page(
        pagination_parameters,
        lambda p, n: admin.list_assignments(db.session(), current_scope(), p, n, query),
    )


@assignments.route("", methods=["POST"])
@assignments.arguments(AssignmentIn)
@assignments.response(201, AssignmentOut)
@documented(assignments, 401, 403, 422)
@login_required
def create_assignment(body):
    """Assign an inspector to a site (HQ)."""
    row = admin.assign(db.session(), current_scope(), body["user_id"], body["site_id"])
    db.commit()
    return row


@assignments.route("/<assignment_id>", methods=["DELETE"])
@assignments.response(204)
@documented(assignments, 401, 403, 404)
@login_required
def delete_assignment(assignment_id):
    """Revoke an assignment (HQ); the site's records leave the inspector's devices."""
    admin.revoke(db.session(), current_scope(), assignment_id)
    db.commit()


def blueprints():
    """This module's blueprints."""
    return [regions, sites, users, assignments]
