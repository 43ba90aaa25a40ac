"""Who may see and change what: one mechanism for REST and sync alike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from store.db import one_of
from store.enums import HQ, INSPECTOR, REGIONAL_MANAGER, REVIEWER_ROLES
from store.errors import Forbidden, NotFound
from store.models import Site, SiteAssignment, User


@dataclass(frozen=True)
class Scope:
    """A user's reach: all sites (HQ) or a fixed set of site ids."""

    user_id: str
    role: str
    region_id: str | None
    site_ids: frozenset[str] | None  # None means every site
    # Closed sites the user would otherwise reach: out of scope, but their past still counts
    # in reports, so a region's figures read the same to its manager and to HQ.
    closed_site_ids: frozenset[str] = frozenset()

    @property
    def is_hq(self) -> bool:
        """HQ sees everything."""
        return self.role == HQ

    @property
    def is_reviewer(self) -> bool:
        """Regional managers and HQ review, verify and resolve."""
        return self.role in REVIEWER_ROLES

    def sees_site(self, site_id: str | None) -> bool:
        """True when the site is in scope."""
        if self.site_ids is None:
            return True
        return site_id is not None and site_id in self.site_ids

    def site_clause(self, column: ColumnElement) -> ColumnElement[bool]:
        """A WHERE clause limiting `column` (a site id) to the scope."""
        if self.site_ids is None:
            return true()
        return column.in_(sorted(self.site_ids))

    def history_clause(self, column: ColumnElement) -> ColumnElement[bool]:
        """Like site_clause, plus the closed sites in reach: for figures over past periods."""
        if self.site_ids is None:
            return true()
        return column.in_(sorted(self.site_ids | self.closed_site_ids))

    def check_read(self, site_id: str | None, what: str = "record") -> None:
        """404 when out of scope: do not reveal that the record exists."""
        if not self.sees_site(site_id):
            raise NotFound(f"No {what} with that id.")

    def check_write(self, site_id: str | None, what: str = "record") -> None:
        """403 when the site is out of scope."""
        if not self.sees_site(site_id):
            raise Forbidden(f"You may not change this {what}: its site is outside your scope.")

    def check(self, site_id: str | None, what: str, *, write: bool) -> None:
        """Outside scope: 404 to read a record (check_read), 403 to change it (check_write)."""
        (self.check_write if write else self.check_read)(site_id, what)

    def require_role(self, *roles: str) -> None:
        """403 unless the user has one of the roles."""
        if self.role not in roles:
            raise Forbidden(
                f"This needs the role {' or '.join(roles)}; you are {self.role}.",
                reason="wrong_role",
            )


def _assigned(session: Session, user_id: str) -> list[tuple[str, bool]]:
    """(site id, closed) of an inspector's live assignments."""
    rows = session.execute(
        select(SiteAssignment.site_id, Site.deleted_at.is_not(None))
        .join(Site, Site.id == SiteAssignment.site_id)
        .where(SiteAssignment.user_id == user_id, SiteAssignment.revoked_at.is_(None))
    )
    return [(site_id, bool(closed)) for site_id, closed in rows]


def assigned_site_ids(
    session: Session, user_id: str, *, closed_sites: bool = False
) -> frozenset[str]:
    """Sites an inspector is currently assigned to (closed ones only with `closed_sites`)."""
    return frozenset(s for s, closed in _assigned(session, user_id) if closed_sites or not closed)


def scope_for(session: Session, user: User) -> Scope:
    """Compute the scope of a user from their role, region and assignments. Closed sites are
    out of it (REST never reaches them); a pull still sends their closure (sync/pull.py)."""
    if user.role == HQ:
        return Scope(user_id=user.id, role=user.role, region_id=user.region_id, site_ids=None)
    if user.role == REGIONAL_MANAGER:
        stmt = select(Site.id, Site.deleted_at.is_not(None)).where(Site.region_id == user.region_id)
        rows = [(site_id, bool(closed)) for site_id, closed in session.execute(stmt)]
    elif user.role == INSPECTOR:
        rows = _assigned(session, user.id)
    else:
        rows = []
    closed = frozenset(s for s, gone in rows if gone)
    live = frozenset(s for s, gone in rows if not gone)
    return Scope(
        user_id=user.id,
        role=user.role,
        region_id=user.region_id,
        site_ids=live,
        closed_site_ids=closed,
    )


def working_at(session: Session, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (user id, site id) pairs whose user is active and has the site in scope, as
    scope_for gives it: who may be assigned an action there. Three queries for any number."""
    pairs = set(pairs)
    if not pairs:
        return set()
    users = {
        row.id: row
        for row in session.execute(
            select(User.id, User.role, User.region_id, User.active).where(
                one_of(session, User.id, sorted({u for u, _ in pairs}))
            )
        )
        if row.active
    }
    if not users:
        return set()
    live = dict(
        session.execute(
            select(Site.id, Site.region_id).where(
                one_of(session, Site.id, sorted({s for _, s in pairs})),
                Site.deleted_at.is_(None),
            )
        ).all()
    )
    inspectors = sorted(u for u, row in users.items() if row.role == INSPECTOR)
    assigned: set[tuple[str, str]] = set()
    if inspectors and live:
        assigned = set(
            session.execute(
                select(SiteAssignment.user_id, SiteAssignment.site_id).where(
                    one_of(session, SiteAssignment.user_id, inspectors),
                    one_of(session, SiteAssignment.site_id, sorted(live)),
                    SiteAssignment.revoked_at.is_(None),
                )
            ).all()
        )
    found = set()
    for user_id, site_id in pairs:
        user = users.get(user_id)
        if user is None:
            continue
        if (
            user.role == HQ
            or (user.role == INSPECTOR and (user_id, site_id) in assigned)
            or (
                user.role == REGIONAL_MANAGER
                and site_id in live
                and user.region_id is not None
                and live[site_id] == user.region_id
            )
        ):
            found.add((user_id, site_id))
    return found
