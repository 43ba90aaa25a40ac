"""Pull: the changes a device has not seen, in its scope, paged by rev from one snapshot."""

from __future__ import annotations

import datetime as dt
import functools
import heapq
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import Session

from store.db import one_of
from store.enums import INSPECTOR, REGIONAL_MANAGER
from store.errors import Invalid
from store.models import Conflict, SiteAssignment, SyncCounter
from store.types import UTCDateTime
from sync import dumps, holds
from sync.scope import Scope
from sync.tables import TABLES, TableSpec

# Tables whose rows hang off a site through a site_id column (templates are for everyone).
SITE_COLUMN = {
    "sites": "id",
    "occurrences": "site_id",
    "inspections": "site_id",
    "responses": "site_id",
    "attachments": "site_id",
    "actions": "site_id",
}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(value: dt.datetime) -> int:
    # Integer arithmetic: a float timestamp can land a millisecond low.
    return (value - _EPOCH) // dt.timedelta(milliseconds=1)


def _serialiser(spec: TableSpec):
    """A fast row -> wire dict function for one table (a row's columns after those named are
    left out)."""
    names = ("id", "server_rev", *spec.wire_columns)
    json_cols = {c for c, col in spec.columns.items() if col.kind == "json"}
    time_cols = {c for c, col in spec.columns.items() if col.kind == "ms"}
    dt_cols = {c for c in time_cols if isinstance(spec.table.c[c].type, UTCDateTime)}

    def convert(row: Any) -> dict[str, Any]:
        out = dict(zip(names, row, strict=False))
        for c in json_cols:
            if out[c] is not None:
                out[c] = orjson.dumps(out[c]).decode()
        for c in dt_cols:
            if isinstance(out[c], dt.datetime):
                out[c] = _ms(out[c])
        return out

    return names, convert


_SERIALISERS = {name: _serialiser(spec) for name, spec in TABLES.items()}


def reach(scope: Scope) -> frozenset[str] | None:
    """The sites a pull answers for (None: every site): those in scope, and the closed ones it
    was in, whose closure it sends (their tombstone, and deletions of their records)."""
    return None if scope.site_ids is None else scope.site_ids | scope.closed_site_ids


def _scoped(spec: TableSpec, stmt: Select, scope: Scope, sites: frozenset[str] | None) -> Select:
    column = SITE_COLUMN.get(spec.name)
    if column is None:
        return stmt
    if sites is not None:
        return stmt.where(spec.table.c[column].in_(sorted(sites)))
    return stmt.where(scope.site_clause(spec.table.c[column]))


def _select(spec: TableSpec) -> Select:
    table = spec.table
    names, _ = _SERIALISERS[spec.name]
    stmt = select(*(table.c[n] for n in names), table.c.deleted_at)
    if spec.name == "attachments":
        # Bytes uploaded before their record (pending) are no record yet: nobody pulls them
        # (HQ's unscoped pull would, as they have no site), and the uploads' garbage collection
        # may drop them without a tombstone. The record's push makes them one, at a new rev.
        stmt = stmt.where(table.c.pending_upload.is_not(True))
    return stmt


class PullRequest:
    """Validated pull parameters, and the cursor this device was last handed with has_more
    (`resume`): a pull from it continues a sync, whatever was purged meanwhile."""

    def __init__(
        self,
        cursor: int | None,
        limit: int,
        migration: dict | None,
        resume: int | None = None,
        scope_key: str | None = None,
    ) -> None:
        self.cursor = cursor
        self.limit = limit
        self.migration = migration
        self.resume = resume
        self.scope_key = scope_key  # what this device last pulled in (scope_key())
        # The deletions this device is owed (sync/holds.py); the pull leaves here what the
        # device is owed after it.
        self.held: list[holds.Hold] = []
        # A regional manager's sites as this device last pulled them (Reach), if known; the
        # pull leaves here what to remember after it.
        self.reach: Reach | None = None
        # The records this device is owed besides the changes (sync/dumps.py), likewise.
        self.dump: dumps.Dump | None = None
        # Whether a rev was taken for this pull (dumps.FreshCursor).
        self.advanced = False


@dataclass(frozen=True)
class Reach:
    """A regional manager's sites as the device last pulled them; while the device has not
    shown it applied the pull that changed them (a later sync from at least `mark`, the
    cursor that pull handed out), also the sites before (its answer may have been lost)."""

    sites: frozenset[str]
    before: frozenset[str] | None
    mark: int

    @classmethod
    def load(cls, text: str | None) -> Reach | None:
        """The reach from the device's bookkeeping (dump())."""
        if not text:
            return None
        raw = orjson.loads(text)
        before = None if raw["before"] is None else frozenset(raw["before"])
        return cls(frozenset(raw["sites"]), before, raw["mark"])

    def dump(self) -> str:
        """The reach as the device's bookkeeping stores it."""
        before = None if self.before is None else sorted(self.before)
        return orjson.dumps(
            {"sites": sorted(self.sites), "before": before, "mark": self.mark}
        ).decode()


def dump_reach(found: Reach | None) -> str | None:
    """The bookkeeping's text for a reach, or none."""
    return None if found is None else found.dump()


def scope_key(role: str) -> str:
    """What a device's scope is judged by besides its sites: the role. An inspector's sites
    move with their assignments' revs; a regional manager's with the region's sites, compared
    with those the device last pulled (PullRequest.reach): a site that leaves is lost as an
    inspector's revoked one is (its deletions held, sync/holds.py), one that joins is sent."""
    return role


def is_replacement(
    cursor: int | None, purged: int, resume: int | None, last_key: str | None, key: str
) -> bool:
    """Whether the device gets the whole dataset to replace its own: its cursor is older than
    purged tombstones (it may miss deletions), or it last pulled in another role or region.
    Not for the cursor of a page this device was just handed: the records it has from earlier
    pages were all live after those tombstones were written."""
    if cursor is None or cursor <= 0:
        return False
    return (cursor < purged and cursor != resume) or (last_key is not None and last_key != key)


# Conflict kinds that keep a pushed record out of the store (or its change off the record).
REFUSED = ("out_of_scope", "locked", "deleted_record", "invalid_parent")


def parse_migration(raw: Any) -> dict | None:
    """WatermelonDB's migration sync: {from, tables, columns: [{table, columns}]}."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Invalid("'migration' must be JSON.", errors={"migration": ["not JSON"]}) from None
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("tables", []), list)
        or not isinstance(raw.get("columns", []), list)
    ):
        raise Invalid(
            "'migration' must be {from, tables: [...], columns: [{table, columns}]}.",
            errors={"migration": ["wrong shape"]},
        )
    tables = {t for t in raw.get("tables", []) if isinstance(t, str) and t in TABLES}
    for entry in raw.get("columns", []):
        table = entry.get("table") if isinstance(entry, dict) else None
        if isinstance(table, str) and table in TABLES:
            tables.add(table)
    return {"tables": sorted(tables)}


class Page:
    """The changes of one pull, with the ids already in it (updated entries may be
    pre-rendered JSON fragments)."""

    def __init__(self) -> None:
        self.changes: dict[str, dict[str, list]] = {
            n: {"created": [], "updated": [], "deleted": []} for n in TABLES
        }
        self.ids: dict[str, set[str]] = {n: set() for n in TABLES}

    def update(self, name: str, record_id: str, record: Any) -> None:
        """Add a record as updated (WatermelonDB applies creations sent as updates)."""
        if record_id not in self.ids[name]:
            self.ids[name].add(record_id)
            self.changes[name]["updated"].append(record)

    def update_many(
        self, name: str, record_ids: list[str], records: orjson.Fragment | None
    ) -> None:
        """Add records rendered as one fragment of comma-separated JSON objects (orjson writes
        it verbatim between the list's brackets); their ids must not be in the page yet."""
        self.ids[name].update(record_ids)
        if records is not None:
            self.changes[name]["updated"].append(records)

    def delete(self, name: str, record_id: str) -> None:
        """Add a deletion."""
        self.changes[name]["deleted"].append(record_id)


def pull(session: Session, scope: Scope, req: PullRequest) -> dict[str, Any]:
    """One page of changes; the caller runs it in a snapshot (REPEATABLE READ) transaction."""
    cursor = req.cursor
    low = -1 if cursor is None or cursor <= 0 else cursor
    counter = SyncCounter.__table__.c
    # Whether this user's assignments or refused records moved since the cursor: most pulls
    # have neither, and then skip those lookups.
    moved = [
        select(1)
        .where(t.c.user_id == scope.user_id, t.c.server_rev > low, t.c.server_rev <= counter.value)
        .exists()
        for t in (SiteAssignment.__table__, Conflict.__table__)
    ]
    top, purged, assignments_moved, conflicts_moved = session.execute(
        select(counter.value, counter.purged_rev, *moved).where(counter.id == 1)
    ).one()
    key = scope_key(scope.role)
    replacement = is_replacement(cursor, purged, req.resume, req.scope_key, key)
    first = cursor is None or cursor <= 0 or replacement
    low = -1 if first else cursor
    page = Page()
    end, has_more = _page_generic(session, scope, page, low, top, first, req.limit)
    moved = assignments_moved or conflicts_moved
    return finish(session, scope, page, req, low, end, has_more, first, moved, replacement)


def finish(
    session: Session,
    scope: Scope,
    page: Page,
    req: PullRequest,
    low: int,
    end: int,
    has_more: bool,
    first: bool,
    moved: bool,
    replacement: bool,
) -> dict[str, Any]:
    """Add what access changes and migrations bring to a cut page, and shape the answer."""
    gained: set[str] = set()
    if first:
        # The whole dataset (from nothing, or a replacement): no deletion is owed.
        req.held = []
        now = reach(scope)
        manager = scope.role == REGIONAL_MANAGER and now is not None
        req.reach = Reach(now, None, end) if manager else None
    else:
        lost = _closures(scope, page) | _region_moves(scope, req, low, end, gained)
        if moved:
            # Refused records at the sites held wait for their deletions (_lost).
            waiting = holds.sites(h for h in req.held if h.stage != holds.RELEASED)
            lost |= _scope_changes(session, scope, page, low, end, lost | waiting, gained)
        new_sync = low != req.resume  # not a later page of a paged pull
        regained = frozenset(s for s in holds.sites(req.held) if scope.sees_site(s))
        req.held, gone = holds.step(req.held, new_sync, low, end, lost, scope.sees_site)
        _delete_sites(session, scope, page, gone)
        _regained(session, scope, page, regained)
    # The records of the sites gained and of the tables a migration asks for go in pages too.
    sites = tuple(sorted(gained))
    new = [dumps.Task(name, sites, end) for name in SITE_COLUMN] if sites else []
    new += [dumps.Task(name, None, end) for name in (req.migration or {}).get("tables", ())]
    req.dump = dumps.plan(req.dump, first=first, low=low, end=end, new=new)
    used = sum(len(page.ids[n]) + len(page.changes[n]["deleted"]) for n in TABLES)
    render = functools.partial(render_owed, session, scope, page)
    fresh = None if req.advanced else low  # a rev was taken for this page already
    req.dump, owed = dumps.serve(req.dump, req.limit - used, fresh, end, scope.sees_site, render)
    result: dict[str, Any] = {
        "changes": page.changes,
        "timestamp": end,
        "has_more": has_more or owed,
    }
    if replacement:
        result["experimentalStrategy"] = "replacement"
    return result


def render_rows(session: Session, page: Page, name: str, ids: list[str]) -> None:
    """Add these records of one table as updated, rendered in Python."""
    spec = TABLES[name]
    for row in session.execute(_select(spec).where(one_of(session, spec.table.c.id, ids))):
        page.update(name, row[0], _SERIALISERS[name][1](row[:-1]))


def render_owed(
    session: Session,
    scope: Scope,
    page: Page,
    task: dumps.Task,
    site: str | None,
    after: int,
    budget: int,
) -> tuple[int, int | None]:
    """Up to `budget` records a dump owes (sync/dumps.py) at one site (None: wherever the
    scope reaches), after rev `after` in rev order, into the page: how many went in, and the
    rev of the last one when more remain."""
    spec = TABLES[task.table]
    table = spec.table
    stmt = _select(spec).where(
        table.c.deleted_at.is_(None), table.c.server_rev > after, table.c.server_rev <= task.as_of
    )
    if site is None:
        stmt = _scoped(spec, stmt, scope, None)
    else:
        stmt = stmt.where(table.c[SITE_COLUMN[task.table]] == site)
    rows = session.execute(stmt.order_by(table.c.server_rev).limit(budget + 1)).all()
    convert = _SERIALISERS[task.table][1]
    known = page.ids[task.table]
    sent = 0
    for row in rows[:budget]:
        if row[0] not in known:  # sent with the page's changes already
            page.update(task.table, row[0], convert(row[:-1]))
            sent += 1
    return sent, (rows[budget - 1][1] if len(rows) > budget else None)


@functools.cache
def _stream(name: str, first: bool, by_site: bool) -> Select:
    """One table's next rows after a cursor, in rev order: a statement built once (building
    and keying seven statements cost a page more than running most of them), bound to `low`,
    `top`, `n` and, for a scope of sites, `sites`."""
    spec = TABLES[name]
    table = spec.table
    stmt = _select(spec).where(
        table.c.server_rev > bindparam("low"), table.c.server_rev <= bindparam("top")
    )
    if first:
        stmt = stmt.where(table.c.deleted_at.is_(None))
    if by_site:
        stmt = stmt.where(table.c[SITE_COLUMN[name]].in_(bindparam("sites", expanding=True)))
    return stmt.order_by(table.c.server_rev).limit(bindparam("n"))


def _page_generic(
    session: Session, scope: Scope, page: Page, low: int, top: int, first: bool, limit: int
) -> tuple[int, bool]:
    """Merge the tables' change streams by rev and cut one page (any database)."""
    streams = []
    params = {"low": low, "top": top, "n": limit + 1}
    # The sites themselves as far as the pull reaches (a closed site's tombstone), their
    # records only of the sites in scope.
    at_sites = {
        "sites": reach(scope),
        **dict.fromkeys(SITE_COLUMN.keys() - {"sites"}, scope.site_ids),
    }
    for name in TABLES:
        by_site = scope.site_ids is not None and name in SITE_COLUMN
        if by_site:
            params["sites"] = sorted(at_sites[name])
        rows = session.execute(_stream(name, first, by_site), params).all()
        if rows:
            streams.append([(row[1], name, row) for row in rows])
    # One table's rows (most pages) are in rev order already.
    one = len(streams) == 1
    merged = streams[0] if one else list(heapq.merge(*streams, key=itemgetter(0)))
    cut, has_more = merged[:limit], len(merged) > limit
    live: dict[str, list] = {}
    for _rev, name, row in cut:
        if row[-1] is not None:
            page.delete(name, row[0])
        else:
            live.setdefault(name, []).append(row)
    for name, rows in live.items():
        # A fresh page, and each record once in its table's stream: no id to look for first.
        convert = _SERIALISERS[name][1]
        page.ids[name].update(row[0] for row in rows)
        page.changes[name]["updated"].extend(map(convert, rows))
    return (cut[-1][0] if has_more else top), has_more


def _region_moves(
    scope: Scope, req: PullRequest, low: int, end: int, gained: set[str]
) -> frozenset[str]:
    """A regional manager's sites since the device's last pull: those that joined (moved into
    the region, or new) go in `gained`, to be sent whole; those that left are returned, lost
    (sync/holds.py).
    Judged against the sites before a change whose pull the device has not shown it applied,
    so a lost answer is sent again."""
    now = reach(scope)
    if scope.role != REGIONAL_MANAGER or now is None:
        req.reach = None
        return frozenset()
    known = req.reach
    if known is None:  # bookkeeping from before devices remembered their sites
        req.reach = Reach(now, None, end)
        return frozenset()
    # A later sync from before the cursor the changing pull handed out: its answer was lost.
    sync = low != req.resume  # not a later page of a paged pull
    unseen = known.before is not None and sync and low < known.mark
    prev = known.before if unseen and known.before is not None else known.sites
    if prev == now:
        if known.sites != now:  # back to the sites the device has: nothing pending
            req.reach = Reach(now, None, end)
        elif known.before is not None and sync and not unseen:  # the device has the change
            req.reach = Reach(now, None, known.mark)
        else:
            req.reach = known
        return frozenset()
    gained.update(s for s in now - prev if scope.sees_site(s))
    req.reach = Reach(now, prev, end)
    return prev - now


def _closures(scope: Scope, page: Page) -> frozenset[str]:
    """Sites closed since the cursor (their tombstones are in this page): their records leave
    the device, as if access were revoked; REST no longer reaches them either."""
    return frozenset(page.changes["sites"]["deleted"]) & scope.closed_site_ids


def _delete_sites(session: Session, scope: Scope, page: Page, gone: frozenset[str]) -> None:
    """The deletions of the records at sites the device lost (sync/holds.py), and of the
    records it pushed there that the server refused (they are none of those)."""
    if gone:
        _delete_where(session, page, gone, tombstones=False)
        _delete_refused(session, scope, page, gone)


def _regained(session: Session, scope: Scope, page: Page, sites: frozenset[str]) -> None:
    """Sites given back while their deletions were held: the grant sends their live records;
    the device also drops those deleted meanwhile (their tombstones passed out of its scope)
    and those it pushed there that the server refused."""
    if sites:
        _delete_where(session, page, sites, tombstones=True)
        _delete_refused(session, scope, page, sites)


def _delete_where(session: Session, page: Page, sites: frozenset[str], *, tombstones: bool) -> None:
    """Deletions of the records at these sites (only those deleted, when `tombstones`)."""
    for name, column in SITE_COLUMN.items():
        table = TABLES[name].table
        stmt = select(table.c.id).where(one_of(session, table.c[column], sorted(sites)))
        if tombstones:
            stmt = stmt.where(table.c.deleted_at.is_not(None))
        for record_id in session.execute(stmt).scalars():
            if record_id not in page.ids[name]:
                page.delete(name, record_id)


def _delete_refused(session: Session, scope: Scope, page: Page, sites: frozenset[str]) -> None:
    """Deletions of the records this user pushed at these sites that the server refused and
    the user cannot see (it never stored them, or not where they may see them)."""
    refused: dict[str, set[str]] = {}
    for name, record_id in session.execute(
        select(Conflict.table_name, Conflict.record_id).where(
            Conflict.user_id == scope.user_id,
            Conflict.kind.in_(REFUSED),
            one_of(session, Conflict.site_id, sorted(sites)),
        )
    ):
        if name in TABLES and record_id not in page.ids[name]:
            refused.setdefault(name, set()).add(record_id)
    for name, ids in refused.items():
        # One the device may still see (a move to the lost site refused) stays.
        spec = TABLES[name]
        live = select(spec.table.c.id).where(
            one_of(session, spec.table.c.id, sorted(ids)), spec.table.c.deleted_at.is_(None)
        )
        seen = set(session.execute(_scoped(spec, live, scope, None)).scalars())
        for record_id in sorted(ids - seen):
            page.delete(name, record_id)


def _scope_changes(
    session: Session,
    scope: Scope,
    page: Page,
    low: int,
    end: int,
    kept: frozenset[str],
    gained: set[str],
) -> frozenset[str]:
    """Access granted since the cursor: the sites go in `gained`; the refused records of the
    user's pushes, except at the sites whose deletions wait (`kept`, sync/holds.py). Returns
    the sites revoked, whose deletions wait too."""
    revoked: frozenset[str] = frozenset()
    if scope.role == INSPECTOR:
        rows = session.execute(
            select(SiteAssignment.site_id, SiteAssignment.revoked_at).where(
                SiteAssignment.user_id == scope.user_id,
                SiteAssignment.server_rev > low,
                SiteAssignment.server_rev <= end,
            )
        ).all()
        gained.update(s for s, revoked in rows if revoked is None and scope.sees_site(s))
        revoked = frozenset(s for s, r in rows if r is not None and not scope.sees_site(s))
    # Records of this user's pushes that the server refused: the device drops those the
    # server does not have (or it would keep them forever) and reverts to the others.
    refused = session.execute(
        select(Conflict.table_name, Conflict.record_id, Conflict.site_id).where(
            and_(
                Conflict.user_id == scope.user_id,
                Conflict.kind.in_(REFUSED),
                Conflict.server_rev > low,
                Conflict.server_rev <= end,
            )
        )
    ).all()
    for table_name, record_id, site_id in refused:
        spec = TABLES.get(table_name)
        if spec is None or record_id in page.ids[table_name] or site_id in kept | revoked:
            continue
        stmt = _scoped(
            spec,
            _select(spec).where(spec.table.c.id == record_id, spec.table.c.deleted_at.is_(None)),
            scope,
            None,
        )
        row = session.execute(stmt).first()
        if row is None:
            page.delete(table_name, record_id)
        else:
            # Visible but not theirs to change: send the server's copy so the device reverts.
            page.update(table_name, record_id, _SERIALISERS[table_name][1](row[:-1]))
    return revoked
