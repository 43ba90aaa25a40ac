"""Sign in, refresh tokens, and who am I."""

from __future__ import annotations

from sqlalchemy import select

from api import db
from api.blueprints.common import documented, make_blueprint
from api.extensions import (
    limiter,
    login_account_key,
    login_account_limit,
    login_address_key,
    login_address_limit,
)
from api.security import (
    TokenReused,
    authenticate,
    current_scope,
    current_user,
    end_session,
    issue_tokens,
    login_required,
    rotate_refresh,
)
from schemas.auth import LoginIn, MeOut, RefreshIn, TokensOut
from store.models import Region, Site

blp = make_blueprint("auth", "/auth", "Sign in, token refresh and sign out")
me_blp = make_blueprint("me", "/me", "The signed-in user")


def _failed(response) -> bool:
    return response.status_code == 401


# Only failed sign-ins count, per account and per client address (each its own counter).
@blp.route("/login", methods=["POST"])
# Shared scopes: failures through the console's sign-in form count against the same limits.
@limiter.shared_limit(
    login_account_limit, "login-account", key_func=login_account_key, deduct_when=_failed
)
@limiter.shared_limit(
    login_address_limit, "login-address", key_func=login_address_key, deduct_when=_failed
)
@blp.arguments(LoginIn)
@blp.response(200, TokensOut)
@documented(blp, 401, 422, 429, auth=False)
def login(body):
    """Exchange email and password for an access token and a refresh token."""
    user = authenticate(db.session(), body["email"], body["password"])
    tokens = issue_tokens(db.session(), user)
    db.commit()
    return tokens


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshIn)
@blp.response(200, TokensOut)
@documented(blp, 401, 422, auth=False)
def refresh(body):
    """Spend a refresh token for a new pair; the old one stops working."""
    try:
        tokens = rotate_refresh(db.session(), body["refresh_token"])
    except TokenReused:
        db.commit()  # keep the family revocation
        raise
    db.commit()
    return tokens


@blp.route("/logout", methods=["POST"])
@blp.arguments(RefreshIn)
@blp.response(204, description="Signed out: the refresh token no longer refreshes")
@documented(blp, 401, 422, auth=False)
def logout(body):
    """Sign out: revoke a refresh token and the session (token family) it belongs to.

    Idempotent: a token already spent or revoked answers 204 too. The access tokens issued
    to that sign-in stop working at once (401 `session_ended`)."""
    end_session(db.session(), body["refresh_token"])
    db.commit()


@me_blp.route("")
@me_blp.response(200, MeOut)
@documented(me_blp, 401)
@login_required
def me():
    """The current user with role and scope (regions and sites)."""
    user, scope = current_user(), current_scope()
    session = db.session()
    sites = (
        session.execute(
            select(Site)
            .where(Site.deleted_at.is_(None), scope.site_clause(Site.id))
            .order_by(Site.code)
        )
        .scalars()
        .all()
    )
    region_ids = {s.region_id for s in sites} | ({user.region_id} if user.region_id else set())
    regions_stmt = select(Region).order_by(Region.name)
    if not scope.is_hq:
        regions_stmt = regions_stmt.where(Region.id.in_(sorted(region_ids)))
    regions = session.execute(regions_stmt).scalars().all()
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "region_id": user.region_id,
        "scope": {
            "all_sites": scope.is_hq,
            "regions": [{"id": r.id, "name": r.name, "code": r.code} for r in regions],
            "sites": [
                {"id": s.id, "name": s.name, "code": s.code, "region_id": s.region_id}
                for s in sites
            ],
        },
    }


def blueprints():
    """This module's blueprints."""
    return [blp, me_blp]
