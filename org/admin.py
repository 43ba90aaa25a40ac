"""HQ administration of regions, sites, users and site assignments, scoped for readers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from inspections import schedule_service
from org.paging import page_of
from store import rollups
from store.enums import HQ, INSPECTOR, REGIONAL_MANAGER
from store.errors import Conflict, Invalid, NotFound
from store.models import AuditEvent, RefreshToken, Region, Site, SiteAssignment, User
from store.types import utcnow
from sync.scope import Scope


def _taken(db: Session, model: type, column: str, value: Any, exclude_id: str | None) -> bool:
    stmt = select(model.id).where(getattr(model, column) == value)
    if exclude_id:
        stmt = stmt.where(model.id != exclude_id)
    return db.execute(stmt.limit(1)).first() is not None


def _unique(
    db: Session, model: type, fields: dict[str, Any], exclude_id: str | None = None
) -> None:
    errors = {
        name: [f"'{value}' is already used by another {model.__tablename__[:-1]}."]
        for name, value in fields.items()
        if value is not None and _taken(db, model, name, value, exclude_id)
    }
    if errors:
        raise Invalid("Some values are already taken.", errors=errors, reason="duplicate")


# --- audit trail -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe value for the audit trail."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _diff(obj: Any, data: dict[str, Any]) -> dict[str, list[Any]]:
    """{column: [old, new]} for what `data` changes on `obj` (read before it is applied)."""
    return {
        key: [_plain(getattr(obj, key)), _plain(value)]
        for key, value in data.items()
        if getattr(obj, key) != value
    }


def _created(obj: Any, columns: tuple[str, ...]) -> dict[str, list[Any]]:
    return {c: [None, _plain(getattr(obj, c))] for c in columns}


def _audit(
    db: Session, scope: Scope, entity: str, entity_id: str, action: str, changes: dict
) -> None:
    """One audit event for an administrative change, in the caller's transaction: who (the
    signed-in HQ user), when, and old -> new. REST has no device, so device_id stays empty."""
    if not changes:
        return
    db.add(
        AuditEvent(
            actor_id=scope.user_id,
            entity=entity,
            entity_id=entity_id,
            action=action,
            changes=changes,
        )
    )


# --- regions ---------------------------------------------------------------------------


def list_regions(db: Session, scope: Scope, page: int, page_size: int) -> tuple[list, int]:
    """Regions the user can see, by name."""
    stmt = select(Region).order_by(Region.name, Region.id)
    if not scope.is_hq:
        region_ids = select(Site.region_id).where(scope.site_clause(Site.id))
        stmt = stmt.where(or_(Region.id == scope.region_id, Region.id.in_(region_ids)))
    return page_of(db, stmt, page, page_size)


def get_region(db: Session, scope: Scope, region_id: str) -> Region:
    """One region in scope."""
    region = db.get(Region, region_id)
    if region is None:
        raise NotFound("No region with that id.")
    if not scope.is_hq and region.id != scope.region_id:
        in_reach = db.execute(
            select(Site.id).where(Site.region_id == region.id, scope.site_clause(Site.id)).limit(1)
        ).first()
        if in_reach is None:
            raise NotFound("No region with that id.")
    return region


def create_region(db: Session, scope: Scope, data: dict) -> Region:
    """HQ creates a region."""
    scope.require_role(HQ)
    _unique(db, Region, {"name": data["name"], "code": data["code"]})
    region = Region(**data)
    db.add(region)
    db.flush()
    _audit(db, scope, "region", region.id, "create", _created(region, ("name", "code")))
    db.flush()
    return region


def update_region(db: Session, scope: Scope, region_id: str, data: dict) -> Region:
    """HQ changes a region."""
    scope.require_role(HQ)
    region = get_region(db, scope, region_id)
    _unique(db, Region, {k: data.get(k) for k in ("name", "code")}, exclude_id=region.id)
    _audit(db, scope, "region", region.id, "update", _diff(region, data))
    for key, value in data.items():
        setattr(region, key, value)
    db.flush()
    return region


def delete_region(db: Session, scope: Scope, region_id: str) -> None:
    """HQ deletes an empty region."""
    scope.require_role(HQ)
    region = get_region(db, scope, region_id)
    has_sites = db.execute(
        select(Site.id).where(Site.region_id == region.id, Site.deleted_at.is_(None)).limit(1)
    ).first()
    has_users = db.execute(select(User.id).where(User.region_id == region.id).limit(1)).first()
    if has_sites or has_users:
        raise Invalid(
            "Move or delete this region's sites and users first.", reason="region_not_empty"
        )
    gone = {c: [_plain(getattr(region, c)), None] for c in ("name", "code")}
    _audit(db, scope, "region", region.id, "delete", gone)
    db.delete(region)
    db.flush()


# --- sites ------------------------------------------------------------------------------


_SITE_AUDITED = ("region_id", "name", "code", "timezone", "address")


def _require_region(db: Session, region_id: str) -> None:
    if db.get(Region, region_id) is None:
        raise Invalid("Unknown region.", errors={"region_id": ["No region with this id."]})


def list_sites(
    db: Session, scope: Scope, page: int, page_size: int, region_id: str | None = None
) -> tuple[list, int]:
    """Live sites in scope, by code."""
    stmt = select(Site).where(Site.deleted_at.is_(None), scope.site_clause(Site.id))
    if region_id:
        stmt = stmt.where(Site.region_id == region_id)
    return page_of(db, stmt.order_by(Site.code, Site.id), page, page_size)


def get_site(db: Session, scope: Scope, site_id: str) -> Site:
    """One live site in scope (404 otherwise)."""
    site = db.get(Site, site_id)
    if site is None or site.deleted_at is not None:
        raise NotFound("No site with that id.")
    scope.check_read(site.id, "site")
    return site


def create_site(db: Session, scope: Scope, data: dict) -> Site:
    """HQ opens a site."""
    scope.require_role(HQ)
    _require_region(db, data["region_id"])
    _unique(db, Site, {"code": data["code"]})
    site = Site(**data)
    db.add(site)
    db.flush()
    _audit(db, scope, "site", site.id, "create", _created(site, _SITE_AUDITED))
    db.flush()
    return site


def update_site(db: Session, scope: Scope, site_id: str, data: dict) -> Site:
    """HQ changes a site."""
    site = _site_for_write(db, scope, site_id)
    if "region_id" in data:
        _require_region(db, data["region_id"])
    _unique(db, Site, {"code": data.get("code")}, exclude_id=site.id)
    old_region, old_zone = site.region_id, site.timezone
    _audit(db, scope, "site", site.id, "update", _diff(site, data))
    for key, value in data.items():
        setattr(site, key, value)
    db.flush()
    # Reports group a site's inspections under its current region, by days in its time zone.
    if site.timezone != old_zone:
        rollups.rezone_site(db, site.id, old_region)
    else:
        rollups.move_site(db, site.id, old_region, site.region_id)
    return site


def delete_site(db: Session, scope: Scope, site_id: str) -> None:
    """HQ closes a site: a tombstone, so devices drop it on their next pull; its schedules stop."""
    site = _site_for_write(db, scope, site_id)
    site.deleted_at = utcnow()
    _audit(db, scope, "site", site.id, "delete", {"deleted_at": [None, _plain(site.deleted_at)]})
    schedule_service.stop_at_site(db, scope, site.id)
    db.flush()


def _site_for_write(db: Session, scope: Scope, site_id: str) -> Site:
    site = db.get(Site, site_id)
    if site is None or site.deleted_at is not None:
        raise NotFound("No site with that id.")
    if not scope.sees_site(site.id):
        scope.check_write(site.id, "site")
    scope.require_role(HQ)
    return site


# --- users ------------------------------------------------------------------------------


def _users_visible(scope: Scope):
    if scope.is_hq:
        return None
    if scope.role == REGIONAL_MANAGER:
        # An inspector working at a site of the region is the manager's to know, whatever
        # region (or none) their account names: their inspections are in the manager's queue.
        works_here = (
            select(SiteAssignment.user_id)
            .join(Site, Site.id == SiteAssignment.site_id)
            .where(Site.region_id == scope.region_id, SiteAssignment.revoked_at.is_(None))
        )
        return or_(User.region_id == scope.region_id, User.id.in_(works_here))
    return User.id == scope.user_id


def list_users(
    db: Session, scope: Scope, page: int, page_size: int, filters: dict
) -> tuple[list, int]:
    """Users the caller may see: HQ all, managers their region's people (and inspectors
    assigned to its sites), inspectors themselves."""
    stmt = select(User)
    clause = _users_visible(scope)
    if clause is not None:
        stmt = stmt.where(clause)
    for key in ("role", "region_id"):
        if filters.get(key):
            stmt = stmt.where(getattr(User, key) == filters[key])
    return page_of(db, stmt.order_by(User.email, User.id), page, page_size)


def get_user(db: Session, scope: Scope, user_id: str) -> User:
    """One user the caller may see."""
    user = db.get(User, user_id)
    clause = _users_visible(scope)
    if user is None or (
        clause is not None
        and db.execute(select(User.id).where(User.id == user_id, clause)).first() is None
    ):
        raise NotFound("No user with that id.")
    return user


def _check_user_fields(db: Session, role: str, region_id: str | None) -> None:
    if region_id is not None:
        _require_region(db, region_id)
    if role == REGIONAL_MANAGER and not region_id:
        raise Invalid(
            "A regional manager needs a region.",
            errors={"region_id": ["Required for a regional manager."]},
        )


def create_user(db: Session, scope: Scope, data: dict, password_hash: str) -> User:
    """HQ adds a user."""
    scope.require_role(HQ)
    email = data["email"].strip().lower()
    _unique(db, User, {"email": email})
    _check_user_fields(db, data["role"], data.get("region_id"))
    user = User(
        email=email,
        name=data["name"],
        role=data["role"],
        region_id=data.get("region_id"),
        password_hash=password_hash,
    )
    db.add(user)
    db.flush()
    # Never the hash: that a password was set is all the trail keeps.
    changes = _created(user, ("email", "name", "role", "region_id", "active"))
    _audit(db, scope, "user", user.id, "create", changes)
    db.flush()
    return user


def update_user(
    db: Session, scope: Scope, user_id: str, data: dict, password_hash: str | None
) -> User:
    """HQ changes a user (role, region, password, active)."""
    scope.require_role(HQ)
    user = get_user(db, scope, user_id)
    data = {k: v for k, v in data.items() if k != "password"}
    _check_user_fields(db, data.get("role", user.role), data.get("region_id", user.region_id))
    if (
        user.role == HQ
        and user.active
        and not (data.get("role", HQ) == HQ and data.get("active", True))
    ):
        _keep_an_hq(db, user, "role" if data.get("role", HQ) != HQ else "active")
    # Either way the sessions signed in before must end: tokens from before a deactivation
    # would otherwise work again on reactivation, and an old password's must not outlive it.
    ends_sessions = bool(password_hash) or data.get("active", user.active) != user.active
    deactivating = user.active and data.get("active", True) is False
    reactivating = not user.active and data.get("active") is True
    changes: dict[str, Any] = _diff(user, data)
    if password_hash:
        changes["password_changed"] = True  # never the hash
    _audit(db, scope, "user", user.id, "update", changes)
    for key, value in data.items():
        setattr(user, key, value)
    if password_hash:
        user.password_hash = password_hash
    if ends_sessions:
        revoke_refresh_tokens(db, user.id)
    if deactivating:
        # Nobody else can do what is assigned to them; left live it would count as missed.
        schedule_service.withdraw_assignee(db, user.id)
    elif reactivating:
        db.flush()
        schedule_service.restore_assignee(db, user.id)
    db.flush()
    return user


def _keep_an_hq(db: Session, user: User, field: str) -> None:
    """409 when `user` is the last active HQ account: the organisation needs an administrator."""
    # Lock every active HQ row (in one order), so two HQs demoting each other at once cannot
    # both see the other one still active.
    others = db.execute(
        select(User.id)
        .where(User.role == HQ, User.active.is_(True))
        .order_by(User.id)
        .with_for_update()
    ).scalars()
    if not any(other != user.id for other in others):
        raise Conflict(
            "This is the last active HQ account; create or reactivate another HQ user first.",
            reason="last_hq",
            errors={field: ["The organisation needs at least one active HQ account."]},
        )


def revoke_refresh_tokens(db: Session, user_id: str) -> None:
    """End every sign-in of a user: their unrevoked refresh tokens stop working."""
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# Kept a day past expiry: a token is refused by its own signed expiry long before its row goes.
_EXPIRED_KEPT = dt.timedelta(days=1)


def purge_expired_sign_ins(db: Session) -> int:
    """Delete the rows of refresh tokens and console sign-ins past their expiry (a day's
    margin); a live token's row, spent or not, stays for reuse detection. Returns how many."""
    cutoff = utcnow() - _EXPIRED_KEPT
    return db.execute(delete(RefreshToken).where(RefreshToken.expires_at < cutoff)).rowcount


# --- site assignments -------------------------------------------------------------------


def list_assignments(
    db: Session, scope: Scope, page: int, page_size: int, filters: dict
) -> tuple[list, int]:
    """Live assignments at sites in scope (inspectors see their own)."""
    stmt = select(SiteAssignment).where(
        SiteAssignment.revoked_at.is_(None), scope.site_clause(SiteAssignment.site_id)
    )
    if scope.role == INSPECTOR:
        stmt = stmt.where(SiteAssignment.user_id == scope.user_id)
    for key in ("user_id", "site_id"):
        if filters.get(key):
            stmt = stmt.where(getattr(SiteAssignment, key) == filters[key])
    return page_of(db, stmt.order_by(SiteAssignment.id), page, page_size)


def assign(db: Session, scope: Scope, user_id: str, site_id: str) -> SiteAssignment:
    """HQ gives an inspector a site; the site's records reach their devices on the next pull."""
    scope.require_role(HQ)
    errors: dict[str, list[str]] = {}
    user = db.get(User, user_id)
    if user is None:
        errors["user_id"] = ["No user with this id."]
    elif user.role != INSPECTOR:
        errors["user_id"] = ["Only inspectors are assigned to sites; managers see their region."]
    site = db.get(Site, site_id)
    if site is None or site.deleted_at is not None:
        errors["site_id"] = ["No site with this id."]
    if errors:
        raise Invalid("The assignment is not valid.", errors=errors)
    row = db.execute(
        select(SiteAssignment).where(
            SiteAssignment.user_id == user_id, SiteAssignment.site_id == site_id
        )
    ).scalar_one_or_none()
    changes: dict[str, Any] = {}
    if row is None:
        row = SiteAssignment(user_id=user_id, site_id=site_id)
        db.add(row)
        changes = {"user_id": [None, user_id], "site_id": [None, site_id]}
    elif row.revoked_at is not None:
        changes = {"revoked_at": [_plain(row.revoked_at), None]}
        row.revoked_at = None
        db.flush()
        schedule_service.restore_assignee(db, user_id, site_id)
    db.flush()
    _audit(db, scope, "site_assignment", row.id, "assign", changes)
    db.flush()
    return row


def revoke(db: Session, scope: Scope, assignment_id: str) -> None:
    """HQ removes an assignment; the site's records arrive on the device as deletions, and
    the inspector's future occurrences there are withdrawn (they can no longer do them)."""
    scope.require_role(HQ)
    row = db.get(SiteAssignment, assignment_id)
    if row is None or row.revoked_at is not None:
        raise NotFound("No assignment with that id.")
    row.revoked_at = utcnow()
    changes = {
        "revoked_at": [None, _plain(row.revoked_at)],
        "user_id": row.user_id,
        "site_id": row.site_id,
    }
    _audit(db, scope, "site_assignment", row.id, "revoke", changes)
    schedule_service.withdraw_assignee(db, row.user_id, row.site_id)
    db.flush()
