"""A pull on PostgreSQL in two round trips: one prepared statement reads the token's user, their
scope, the counter and the page (rows carry their wire JSON, kept by the database when they are
written), sent with the transaction's settings; then the device's bookkeeping goes with the
COMMIT.

The statement runs in a REPEATABLE READ transaction, so whatever the rare cases read next (access
granted or revoked since the cursor, refused records, migrations, templates rendered in Python)
comes from the same snapshot.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy.orm import Session

from store.enums import HQ, INSPECTOR, REGIONAL_MANAGER
from store.errors import SignInEnded, Unauthorized
from sync import holds
from sync.dumps import Dump, dump_text
from sync.pull import (
    SITE_COLUMN,
    Page,
    PullRequest,
    Reach,
    dump_reach,
    finish,
    is_replacement,
    render_rows,
    scope_key,
)
from sync.scope import Scope
from sync.tables import TABLES, TableSpec

_NAMES = list(TABLES)


# Rows carry their wire JSON, rendered by the database when they are written (the generated
# column `sync_doc`, migration 0003), except templates: PostgreSQL's text for their JSON column
# is not orjson's, so Python renders those.
_PYTHON_SIDE = frozenset(
    n for n, spec in TABLES.items() if any(c.kind == "json" for c in spec.columns.values())
)


def _branch(index: int, name: str, spec: TableSpec, scoped: bool, first: bool) -> str:
    """One table's next rows after the cursor, in rev order from an index (walked per site in
    scope, so no site's rows are sorted wholesale)."""
    live = " AND t.deleted_at IS NULL" if first else ""
    doc = "NULL" if name in _PYTHON_SIDE else "t.sync_doc"
    read = f"t.server_rev rev, {index} tab, t.id, t.deleted_at IS NOT NULL gone, {doc} doc"
    table = spec.table.name
    column = SITE_COLUMN.get(name)
    if scoped and column is not None:
        # The sites themselves as far as the pull reaches (a closed site's tombstone), their
        # records only of the sites in scope (sync/pull.py: reach).
        sites = "scope s" if name == "sites" else "(SELECT site FROM scope WHERE NOT closed) s"
        # The site and rev bounds as row comparisons, and the order by both columns: only the
        # (site, rev) index serves them. Written as `site = s.site AND rev > low`, the generic
        # plan walked the rev index and filtered by site, reading every other site's rows
        # since the cursor (2.8 ms instead of 1.7 for a page of 1000).
        return (
            f"(SELECT k.* FROM {sites} CROSS JOIN LATERAL "
            f"(SELECT {read} FROM {table} t "
            f"WHERE (t.{column}, t.server_rev) > (s.site, %(low)s) "
            f"AND (t.{column}, t.server_rev) <= (s.site, (SELECT top FROM counter)){live} "
            f"ORDER BY t.{column}, t.server_rev LIMIT %(n)s) k ORDER BY k.rev LIMIT %(n)s)"
        )
    # Bytes uploaded before their record have no site and are no record yet (see pull._select).
    pending = " AND t.pending_upload IS NOT TRUE" if name == "attachments" else ""
    return (
        f"(SELECT {read} FROM {table} t WHERE t.server_rev > %(low)s "
        f"AND t.server_rev <= (SELECT top FROM counter){live}{pending} "
        f"ORDER BY t.server_rev LIMIT %(n)s)"
    )


def statement(scoped: bool, first: bool) -> str:
    """The user, scope and counter as one JSON row (tab NULL), then the page's rows in rev
    order, one more than asked when there is more (scoped: not HQ; first: no cursor)."""
    branches = " UNION ALL ".join(
        _branch(i, name, spec, scoped, first) for i, (name, spec) in enumerate(TABLES.items())
    )
    if scoped:
        scope = f"""
        scope(site, closed) AS (
            SELECT a.site_id, s.deleted_at IS NOT NULL FROM site_assignments a
              JOIN me ON a.user_id = me.id JOIN sites s ON s.id = a.site_id
             WHERE me.role = '{INSPECTOR}' AND a.revoked_at IS NULL
            UNION ALL
            SELECT s.id, s.deleted_at IS NOT NULL FROM sites s JOIN me ON s.region_id = me.region_id
             WHERE me.role = '{REGIONAL_MANAGER}'
        ),"""
        sites = (
            "(SELECT array_agg(site) FROM scope) AS sites, "
            "(SELECT array_agg(site) FROM scope WHERE closed) AS closed"
        )
    else:
        scope, sites = "", "NULL::text[] AS sites, NULL::text[] AS closed"
    return f"""
    WITH me AS (
        SELECT u.id, u.role, u.region_id FROM users u WHERE u.id = %(user)s AND u.active
    ),{scope}
    counter AS (
        SELECT c.value AS top, c.purged_rev AS purged,
               EXISTS (SELECT 1 FROM site_assignments a WHERE a.user_id = %(user)s
                        AND a.server_rev > %(low)s AND a.server_rev <= c.value)
            OR EXISTS (SELECT 1 FROM conflicts f WHERE f.user_id = %(user)s
                        AND f.server_rev > %(low)s AND f.server_rev <= c.value) AS moved
        FROM sync_counter c WHERE c.id = 1
    )
    SELECT NULL::bigint AS rev, NULL::int AS tab, NULL AS id, NULL::boolean AS gone,
           row_to_json(m)::text AS doc
    FROM (SELECT c.top, c.purged, c.moved, (SELECT role FROM me) AS role,
                 EXISTS (SELECT 1 FROM refresh_tokens r
                         WHERE r.family = %(sid)s AND r.revoked_at IS NOT NULL) AS ended,
                 (SELECT region_id FROM me) AS region_id, {sites},
                 d.resume_rev AS resume, d.scope_key, d.held, d.reach, d.dump
          FROM counter c LEFT JOIN device_states d
            ON d.user_id = %(user)s AND d.device_id = %(device)s) m
    UNION ALL
    SELECT u.rev, u.tab, u.id, u.gone, u.doc FROM ({branches} ORDER BY rev LIMIT %(n)s) u
    """


# Whitespace collapsed: psycopg caches its parse of statements up to 4 kB only. Every statement
# here is bytes, as psycopg sends it: text would be encoded again on every pull.
_STATEMENTS = {
    (s, f): re.sub(r"\s+", " ", statement(s, f)).encode()
    for s in (True, False)
    for f in (True, False)
}
# Sent with the statement, in one round trip. The statement is prepared and planned once: its
# plan does not depend on how far the cursor is (index walks with a LIMIT), and planning seven
# branches costs more than running them.
_SETTINGS = (
    b"SELECT set_config('synchronous_commit', 'off', true), "
    b"set_config('plan_cache_mode', 'force_generic_plan', true)"
)
# The device's bookkeeping, sent with the COMMIT. A page that continues a paged pull (its cursor
# is the resume point) keeps the cursor the pull started from: what the device edited before
# that pull is as old as that. Losing the bookkeeping in a database crash (the commit does not
# wait for the flush) makes the device's next push judge its edits against an older base (more
# conflicts recorded, none missed), except in the middle of a paged pull: the next page then
# counts as a pull of its own, and an edit overwriting a change made before that pull began
# goes unrecorded.
_NOTE_DEVICE = re.sub(
    r"\s+",
    " ",
    """
    INSERT INTO device_states (user_id, device_id, last_pull_at, last_pulled_rev,
                               pull_start_rev, resume_rev, scope_key, held, reach, dump)
    VALUES (%(user)s, %(device)s, now(), %(end)s, %(start)s, %(resume)s, %(key)s, %(held)s,
            %(reach)s, %(dump)s)
    ON CONFLICT (user_id, device_id) DO UPDATE SET
        last_pull_at = excluded.last_pull_at,
        last_pulled_rev = excluded.last_pulled_rev,
        pull_start_rev = CASE WHEN device_states.resume_rev = excluded.pull_start_rev
                              THEN device_states.pull_start_rev
                              ELSE excluded.pull_start_rev END,
        resume_rev = excluded.resume_rev,
        scope_key = excluded.scope_key,
        held = excluded.held,
        reach = excluded.reach,
        dump = excluded.dump
    """,
).encode()
_BEGIN = b"BEGIN ISOLATION LEVEL REPEATABLE READ"


def _run(
    raw: Any, params: dict[str, Any], scoped: bool, first: bool, begin: bool = False
) -> tuple[dict[str, Any], list[tuple]]:
    """The statement's summary (as JSON) and its page rows (after beginning the transaction
    and its settings, in the same round trip, when `begin`)."""
    with raw.pipeline():
        if begin:
            # Sent by us, not by psycopg: psycopg waits for the answer to its own BEGIN.
            raw.execute(_BEGIN)
            raw.execute(_SETTINGS)
        cursor = raw.execute(_STATEMENTS[(scoped, first)], params, prepare=True)
    rows = cursor.fetchall()
    meta = next(orjson.loads(row[4]) for row in rows if row[1] is None)
    return meta, [row for row in rows if row[1] is not None]


def _page(session: Session, rows: list[tuple]) -> Page:
    """The page of these rows: rendered documents joined per table, tombstones as deletions,
    templates rendered in Python."""
    page = Page()
    rendered: dict[int, tuple[list[str], list[str]]] = {}
    python_side: dict[str, list[str]] = {}
    for _rev, tab, record_id, gone, doc in rows:
        if gone:
            page.delete(_NAMES[tab], record_id)
        elif doc is None:
            python_side.setdefault(_NAMES[tab], []).append(record_id)
        else:
            ids, docs = rendered.setdefault(tab, ([], []))
            ids.append(record_id)
            docs.append(doc)
    for tab, (ids, docs) in rendered.items():
        page.update_many(_NAMES[tab], ids, orjson.Fragment(",".join(docs)))
    for name, ids in python_side.items():
        render_rows(session, page, name, ids)
    return page


def pull(
    session: Session,
    user_id: str,
    token_role: str,
    device_id: str,
    req: PullRequest,
    sign_in: str | None = None,
) -> dict[str, Any]:
    """One page of changes for this user and device, and the device's bookkeeping, committed.
    The session must not have begun: the pull begins its own REPEATABLE READ transaction, so
    what the rare cases read after the statement (access changes, refusals, migrations,
    templates) comes from the same snapshot. `sign_in`: the token's sign-in (its `sid`); one
    that was signed out is refused."""
    # Autocommit at the driver: the transaction is begun and committed by the statements
    # below (the session's rollback when it closes then finds nothing to do, and on an error
    # still ends it: psycopg asks the server's transaction state).
    if session.in_transaction():
        raise RuntimeError("pull_pg.pull begins its own transaction: call it on a fresh session")
    connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    raw = connection.connection.driver_connection
    cursor = req.cursor
    first = cursor is None or cursor <= 0
    params = {
        "user": user_id,
        "sid": sign_in,
        "device": device_id,
        "low": -1 if first else cursor,
        "n": req.limit + 1,
    }
    scoped = token_role != HQ
    meta, rows = _run(raw, params, scoped, first, begin=True)
    role = meta["role"]
    if role is None:
        raise Unauthorized(
            "This account no longer exists or is disabled.", reason="account_disabled"
        )
    if meta["ended"]:
        # The page was read, but none of it leaves: the token's sign-in has ended.
        raise SignInEnded()
    if (role != HQ) != scoped:
        # The role changed since the token was issued: the same snapshot, the right statement.
        scoped = role != HQ
        meta, rows = _run(raw, params, scoped, first)
    key = scope_key(role)
    replacement = is_replacement(cursor, meta["purged"], meta["resume"], meta["scope_key"], key)
    if replacement:
        # Purged tombstones or another scope: the whole dataset, from the same snapshot.
        first, params["low"] = True, -1
        meta, rows = _run(raw, params, scoped, first)
    has_more = len(rows) > req.limit
    rows = rows[: req.limit]
    end = rows[-1][0] if has_more else meta["top"]
    sites = frozenset(meta["sites"] or ()) if scoped else None
    closed = frozenset(meta["closed"] or ()) if scoped else frozenset()
    live = None if sites is None else sites - closed
    scope = Scope(user_id, role, meta["region_id"], live, closed)
    page = _page(session, rows)
    req.resume, req.held = meta["resume"], holds.load(meta["held"])
    req.reach, req.dump = Reach.load(meta["reach"]), Dump.load(meta["dump"])
    result = finish(
        session, scope, page, req, params["low"], end, has_more, first, meta["moved"], replacement
    )
    # The bookkeeping and the COMMIT in one round trip (psycopg follows the server's
    # transaction state, so the session has nothing left to commit or roll back).
    with raw.pipeline():
        resume = end if result["has_more"] else None
        note = {"user": user_id, "device": device_id, "end": end, "start": cursor, "key": key}
        extra = {
            "held": holds.dump(req.held),
            "reach": dump_reach(req.reach),
            "dump": dump_text(req.dump),
        }
        raw.execute(_NOTE_DEVICE, {**note, "resume": resume, **extra})
        raw.execute(b"COMMIT")
    return result
