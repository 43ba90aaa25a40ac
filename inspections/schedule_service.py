"""Schedules over the database: HQ defines them, occurrences are generated ahead and synced."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from inspections import schedules
from store.db import one_of
from store.enums import HQ
from store.errors import Invalid, NotFound
from store.models import (
    Inspection,
    Occurrence,
    Schedule,
    Site,
    SiteAssignment,
    Template,
    TemplateVersion,
    User,
)
from store.types import utcnow
from sync.scope import Scope, scope_for

HORIZON = dt.timedelta(days=14)
log = logging.getLogger(__name__)


def _check(session: Session, data: dict[str, Any]) -> tuple[Template, TemplateVersion]:
    errors: dict[str, list[str]] = {}
    template = session.get(Template, data.get("template_id"))
    version = None
    if template is None or template.archived:
        errors["template_id"] = ["no such template"]
    else:
        version = session.execute(
            select(TemplateVersion)
            .where(TemplateVersion.draft_id == template.id)
            .order_by(TemplateVersion.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        if version is None:
            errors["template_id"] = ["publish the template before scheduling it"]
    site = session.get(Site, data.get("site_id"))
    if site is None or site.deleted_at is not None:
        errors["site_id"] = ["no such site"]
    assigned = set(
        session.execute(
            select(SiteAssignment.user_id).where(
                SiteAssignment.site_id == data.get("site_id"), SiteAssignment.revoked_at.is_(None)
            )
        ).scalars()
    )
    bad = [u for u in data.get("assignee_ids", []) if u not in assigned]
    if bad:
        errors["assignee_ids"] = [f"not inspectors assigned to this site: {', '.join(bad)}"]
    try:
        schedules.parse(data.get("recurrence") or {}, data.get("timezone") or "")
    except schedules.RecurrenceInvalid as exc:
        errors.update(exc.errors)
    if errors:
        raise Invalid("The schedule is not valid.", errors=errors)
    return template, version


def create(
    session: Session, scope: Scope, data: dict[str, Any], now: dt.datetime | None = None
) -> Schedule:
    """HQ schedules a template at a site; occurrences for the coming two weeks follow."""
    scope.require_role(HQ)
    # One occurrence per assignee and slot: a repeated id would clash on the unique key.
    data["assignee_ids"] = list(dict.fromkeys(data.get("assignee_ids") or []))
    site = session.get(Site, data.get("site_id"))
    data.setdefault("timezone", site.timezone if site else "")
    _check(session, data)
    row = Schedule(
        draft_id=data["template_id"],
        site_id=data["site_id"],
        assignee_ids=data["assignee_ids"],
        recurrence=data["recurrence"],
        timezone=data["timezone"],
        window_minutes=data.get("window_minutes", 60),
        grace_minutes=data.get("grace_minutes", 120),
    )
    session.add(row)
    session.flush()
    generate(session, row, now or utcnow())
    return row


def _works_at(session: Session, user_id: str, site_id: str) -> bool:
    """Whether this user is active and has the site in their scope."""
    user = session.get(User, user_id)
    return user is not None and user.active and scope_for(session, user).sees_site(site_id)


def generate(
    session: Session, schedule: Schedule, now: dt.datetime, horizon: dt.timedelta = HORIZON
) -> int:
    """Create the missing occurrences due in [now, now + horizon) for every assignee."""
    if not schedule.active:
        return 0
    start = max(now, schedule.generated_until or now)
    end = now + horizon
    if start >= end:
        return 0
    made = _fill(session, schedule, start, end)
    schedule.generated_until = end
    session.flush()
    return made


def _fill(
    session: Session,
    schedule: Schedule,
    start: dt.datetime,
    end: dt.datetime,
    only: str | None = None,
) -> int:
    """Create the occurrences due in [start, end) that no row holds yet (withdrawn ones
    included), for every assignee able to do them, or for `only` that one."""
    version = session.execute(
        select(TemplateVersion)
        .where(TemplateVersion.draft_id == schedule.draft_id)
        .order_by(TemplateVersion.version.desc())
        .limit(1)
    ).scalar_one()
    existing = {
        (o.assignee_id, o.due_at)
        for o in session.execute(
            select(Occurrence).where(
                Occurrence.schedule_id == schedule.id, Occurrence.due_at >= start
            )
        ).scalars()
    }
    # Only people still able to do it: active, and (inspectors) still assigned to the site.
    assignees = [
        a
        for a in dict.fromkeys(schedule.assignee_ids or [])
        if (only is None or a == only) and _works_at(session, a, schedule.site_id)
    ]
    if (schedule.assignee_ids or only) and not assignees:
        return 0
    made = 0
    for slot in schedules.slots(
        schedule.recurrence,
        schedule.timezone,
        start,
        end,
        dt.timedelta(minutes=schedule.window_minutes),
        dt.timedelta(minutes=schedule.grace_minutes),
    ):
        for assignee in assignees or [None]:
            if (assignee, slot.due_at) in existing:
                continue
            existing.add((assignee, slot.due_at))  # never the same row twice in one run
            session.add(
                Occurrence(
                    schedule_id=schedule.id,
                    template_id=version.id,
                    site_id=schedule.site_id,
                    assignee_id=assignee,
                    window_start=slot.window_start,
                    due_at=slot.due_at,
                    miss_at=slot.miss_at,
                    status="upcoming",
                )
            )
            made += 1
    session.flush()
    return made


def generate_all(session: Session, now: dt.datetime | None = None) -> int:
    """Top up every active schedule at a live site (run daily from cron)."""
    now = now or utcnow()
    # The site test also skips schedules of sites closed before closing stopped them.
    rows = (
        session.execute(
            select(Schedule)
            .join(Site, Site.id == Schedule.site_id)
            .where(Schedule.active.is_(True), Site.deleted_at.is_(None))
        )
        .scalars()
        .all()
    )
    return sum(_generate_isolated(session, s, now) for s in rows)


def _generate_isolated(session: Session, schedule: Schedule, now: dt.datetime) -> int:
    """generate() in a savepoint; a schedule that fails is logged and skipped."""
    schedule_id = schedule.id  # read before a rollback expires the row
    try:
        with session.begin_nested():
            return generate(session, schedule, now)
    except Exception:
        # Whatever the failure: all schedules share one transaction, and one bad schedule
        # must not leave the whole organisation without occurrences.
        log.exception(
            "Schedule %s was skipped by the daily top-up: check its recurrence, time zone and "
            "template, or stop it (DELETE /schedules/%s).",
            schedule_id,
            schedule_id,
        )
        return 0


def list_schedules(scope: Scope) -> Select:
    """Schedules at sites in scope."""
    return (
        select(Schedule)
        .where(scope.site_clause(Schedule.site_id))
        .order_by(Schedule.created_at, Schedule.id)
    )


def deactivate(session: Session, scope: Scope, schedule_id: str) -> Schedule:
    """HQ stops a schedule; future occurrences that are not done are withdrawn."""
    scope.require_role(HQ)
    row = session.get(Schedule, schedule_id)
    if row is None:
        raise NotFound("No schedule with that id.")
    _stop(session, row)
    return row


def stop_at_site(session: Session, scope: Scope, site_id: str) -> int:
    """HQ closes a site: its schedules stop and their future occurrences are withdrawn."""
    scope.require_role(HQ)
    rows = (
        session.execute(
            select(Schedule).where(Schedule.site_id == site_id, Schedule.active.is_(True))
        )
        .scalars()
        .all()
    )
    for row in rows:
        _stop(session, row)
    return len(rows)


def _stop(session: Session, row: Schedule) -> None:
    """Deactivate a schedule and withdraw its future occurrences that are not done."""
    row.active = False
    _withdraw(session, Occurrence.schedule_id == row.id)


def withdraw_assignee(session: Session, user_id: str, site_id: str | None = None) -> int:
    """Withdraw a person's future occurrences that are not done (at one site, or at all):
    they lost the site or their account, so nobody could do them and they would count as
    missed. Past ones stay as history; generate() gives them no new ones."""
    where = [Occurrence.assignee_id == user_id]
    if site_id is not None:
        where.append(Occurrence.site_id == site_id)
    return _withdraw(session, *where)


def restore_assignee(session: Session, user_id: str, site_id: str | None = None) -> int:
    """Bring back a person's withdrawn future occurrences (at one site, or at all) of the
    schedules that still name them, now that they can do them again: withdrawn slots block
    the top-up from making them anew, so without this they stayed gone up to the horizon."""
    where = [
        Occurrence.assignee_id == user_id,
        Occurrence.deleted_at.is_not(None),
        Occurrence.due_at > utcnow(),
        Occurrence.status != "done",
        Schedule.active.is_(True),
    ]
    if site_id is not None:
        where.append(Occurrence.site_id == site_id)
    rows = session.execute(
        select(Occurrence, Schedule)
        .join(Schedule, Schedule.id == Occurrence.schedule_id)
        .where(*where)
    ).all()
    user = session.get(User, user_id)
    if user is None or not user.active:
        return 0
    scope = scope_for(session, user)  # once: not a query per occurrence
    count = 0
    drafts = set()
    for occ, schedule in rows:
        if user_id in (schedule.assignee_ids or []) and scope.sees_site(occ.site_id):
            occ.deleted_at = None  # the rev moves, so devices get it back on their next pull
            drafts.add(schedule.draft_id)
            count += 1
    session.flush()
    # Withdrawn, they kept the version they were made in; a newer one may have been published
    # meanwhile (follow_version moves live slots only).
    for draft_id, version_id in _latest_versions(session, drafts).items():
        follow_version(session, draft_id, version_id)
    # The slots topped up while they could not do them were made for the others only: make
    # theirs now, up to where the schedule is generated (the top-up goes on from there).
    now = utcnow()
    naming = select(Schedule).where(Schedule.active.is_(True), Schedule.generated_until > now)
    if site_id is not None:
        naming = naming.where(Schedule.site_id == site_id)
    for schedule in session.execute(naming).scalars():
        if user_id in (schedule.assignee_ids or []) and scope.sees_site(schedule.site_id):
            count += _fill(session, schedule, now, schedule.generated_until, only=user_id)
    return count


def _latest_versions(session: Session, draft_ids: set[str]) -> dict[str, str]:
    """The newest published version id of each of these templates (one query)."""
    if not draft_ids:
        return {}
    found = session.execute(
        select(TemplateVersion.draft_id, TemplateVersion.id)
        .where(one_of(session, TemplateVersion.draft_id, sorted(draft_ids)))
        .order_by(TemplateVersion.version)
    ).all()
    return dict(found)  # the highest version of each template comes last


def follow_version(session: Session, draft_id: str, version_id: str) -> int:
    """Hand out a template's newly published version in the scheduled occurrences nobody has
    begun: live, not done, window not open yet, no inspection started from them. Their rev
    moves, so devices pull the change. Those begun keep the version they were handed out
    with: a run already bound to it, or a slot a phone may be working through offline."""
    rows = (
        session.execute(
            select(Occurrence)
            .join(Schedule, Schedule.id == Occurrence.schedule_id)
            .where(
                Schedule.draft_id == draft_id,
                Occurrence.template_id != version_id,
                Occurrence.window_start > utcnow(),
                Occurrence.status != "done",
                Occurrence.inspection_id.is_(None),
                Occurrence.deleted_at.is_(None),
            )
            # Locked in id order, as writers take rows: one a push fulfils meanwhile is read
            # again once that push commits, and left as it is.
            .order_by(Occurrence.id)
            .with_for_update(of=Occurrence)
        )
        .scalars()
        .all()
    )
    if not rows:
        return 0
    # A run started early (synced before the window opened) is bound to the old version.
    started = set(
        session.execute(
            select(Inspection.occurrence_id).where(
                # The site first: inspections are indexed by site, not by occurrence.
                one_of(session, Inspection.site_id, sorted({o.site_id for o in rows})),
                one_of(session, Inspection.occurrence_id, [o.id for o in rows]),
                Inspection.deleted_at.is_(None),
            )
        ).scalars()
    )
    moved = 0
    for occ in rows:
        if occ.id not in started:
            occ.template_id = version_id
            moved += 1
    session.flush()
    return moved


def _withdraw(session: Session, *where: ColumnElement[bool]) -> int:
    """Tombstone the future, not-done, live occurrences matching `where` (devices drop them)."""
    now = utcnow()
    # Locked (in id order, as writers take rows): one a push fulfils meanwhile is read again
    # once that push commits, and left alone as done, not withdrawn after the fact.
    rows = session.execute(
        select(Occurrence)
        .where(
            *where,
            Occurrence.due_at > now,
            Occurrence.status != "done",
            Occurrence.deleted_at.is_(None),
        )
        .order_by(Occurrence.id)
        .with_for_update()
    ).scalars()
    count = 0
    for occ in rows:
        occ.deleted_at = now
        count += 1
    session.flush()
    return count


def occurrences(scope: Scope, filters: dict[str, Any]) -> Select:
    """Live occurrences at sites in scope, by due time."""
    # Inspectors too see every occurrence of their sites (a colleague's, or one for whoever
    # is on duty): what a sync pull gives their device (sync/pull.py), as domain.md says.
    stmt = select(Occurrence).where(
        Occurrence.deleted_at.is_(None), scope.site_clause(Occurrence.site_id)
    )
    for key in ("site_id", "schedule_id", "assignee_id"):
        if filters.get(key):
            stmt = stmt.where(getattr(Occurrence, key) == filters[key])
    if filters.get("due_from"):
        stmt = stmt.where(Occurrence.due_at >= filters["due_from"])
    if filters.get("due_to"):
        stmt = stmt.where(Occurrence.due_at < filters["due_to"])
    return stmt.order_by(Occurrence.due_at, Occurrence.id)


def with_status(rows: list[Occurrence], now: dt.datetime) -> list[Occurrence]:
    """Attach the time-derived status (devices derive it themselves from the same times)."""
    for occ in rows:
        occ.current_status = schedules.status(
            occ.window_start, occ.due_at, occ.miss_at, occ.status == "done", now
        )
    return rows
