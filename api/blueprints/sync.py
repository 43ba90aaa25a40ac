"""WatermelonDB-compatible sync: pull and push."""

from __future__ import annotations

import time

from flask import Response, current_app, g, request
from marshmallow import fields, validate
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api import db
from api.blueprints.common import documented, make_blueprint
from api.jsonio import dumps
from api.rules import sync_rules
from api.security import current_scope, current_user, login_required, token_claims
from schemas.common import Out, Strict
from store.enums import INSPECTOR, REGIONAL_MANAGER
from store.errors import DomainError
from store.models import DeviceState
from store.types import utcnow
from sync import holds, idempotency, pull, pull_pg, push, revs
from sync.dumps import Dump, FreshCursor, dump_text
from sync.scope import Scope, scope_for

blp = make_blueprint("sync", "/sync", "Offline sync (WatermelonDB protocol)")

MAX_DEVICE_ID = 128
DEVICE_HEADER = {
    "in": "header",
    "name": "X-Device-Id",
    "required": True,
    "description": "A stable per-install id",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_DEVICE_ID},
}


class MissingDevice(DomainError):
    """Sync requests must name the device."""

    status = 400
    reason = "missing_device_id"


def _whole(low: int, high: int, *, strict: bool) -> fields.Integer:
    """An optional whole number; strict refuses 2.5 (marshmallow would truncate it to 2)."""
    return fields.Integer(
        strict=strict, allow_none=True, load_default=None, validate=validate.Range(low, high)
    )


class PullArgs(Strict):
    """Pull parameters in the query string (numbers arrive as text)."""

    last_pulled_at = _whole(0, 2**62, strict=False)
    schema_version = _whole(0, 10**6, strict=False)
    migration = fields.Raw(allow_none=True, load_default=None)
    limit = _whole(1, 100_000, strict=False)


class PullBodyArgs(PullArgs):
    """The same parameters as a JSON body: numbers must be JSON integers."""

    last_pulled_at = _whole(0, 2**62, strict=True)
    schema_version = _whole(0, 10**6, strict=True)
    limit = _whole(1, 100_000, strict=True)


class TableChanges(Out):
    """One table's changes in a pull (creations are sent as updates)."""

    created = fields.List(fields.Dict(), required=True)
    updated = fields.List(fields.Dict(), required=True)
    deleted = fields.List(fields.String(), required=True)


class PullOut(Out):
    """A page of changes and the cursor to send next time."""

    changes = fields.Dict(keys=fields.String(), values=fields.Nested(TableChanges), required=True)
    timestamp = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)
    experimentalStrategy = fields.String(metadata={"description": "'replacement' on a reset"})


class PushConflict(Out):
    """A refused or overwritten change, as the device learns of it."""

    kind = fields.String(required=True)
    table = fields.String(required=True)
    id = fields.String(required=True)
    column = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)


class PushOut(Out):
    """The push was applied; what was refused comes back as conflicts."""

    ok = fields.Boolean(required=True)
    conflicts = fields.List(fields.Nested(PushConflict), required=True)
    timestamp = fields.Integer(required=True)


class PushBody(Strict):
    """Documented shape of a push (validated by the sync engine itself for speed)."""

    changes = fields.Dict(required=True)
    last_pulled_at = fields.Integer(allow_none=True)


def _device_id() -> str:
    device = (request.headers.get("X-Device-Id") or "").strip()
    if not device or len(device) > MAX_DEVICE_ID:
        raise MissingDevice(
            "Send a stable per-install id in the 'X-Device-Id' header "
            f"(1-{MAX_DEVICE_ID} characters)."
        )
    return device


def _json(body: dict, status: int = 200) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json")


def _note_device(user_id: str, column: str, **extra: int | str | None) -> None:
    """Remember when this device last synced and what it knew (one upsert)."""
    session = db.session()
    values = {"user_id": user_id, "device_id": g.device_id, column: utcnow(), **extra}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(DeviceState).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id", "device_id"],
        set_={k: v for k, v in values.items() if k not in ("user_id", "device_id")},
    )
    session.execute(stmt)


def _do_pull(args: dict) -> Response:
    g.device_id = _device_id()
    limit_max = current_app.config["SYNC_PULL_LIMIT"]
    limit = min(args.get("limit") or limit_max, limit_max)
    migration = pull.parse_migration(args.get("migration"))
    session = db.session()
    req = pull.PullRequest(args.get("last_pulled_at"), limit, migration)
    try:
        return _pull_page(session, req)
    except FreshCursor:
        # A part of a dump under the cursor asked from: take a rev, then the same pull again.
        session.rollback()
        revs.advance(session)
        db.commit()
        req = pull.PullRequest(args.get("last_pulled_at"), limit, migration)
        req.advanced = True
        return _pull_page(session, req)


def _pull_page(session: Session, req: pull.PullRequest) -> Response:
    """One page, and the device's bookkeeping, committed."""
    # The token's user, the scope, the page and its cursor all come from one snapshot: the
    # request's transaction, REPEATABLE READ on PostgreSQL (SQLite's transaction is one).
    if session.get_bind().dialect.name == "postgresql":
        # One statement, and the device's bookkeeping sent with the COMMIT (sync/pull_pg.py):
        # nothing is left to commit, so the session just hands its connection back.
        claims = token_claims()
        result = pull_pg.pull(
            session, claims["sub"], claims.get("role", ""), g.device_id, req, claims.get("sid")
        )
        session.close()
        return _json(result)
    user = current_user()
    state = session.get(DeviceState, (user.id, g.device_id))
    start = req.cursor
    if state is not None:
        req.resume, req.scope_key = state.resume_rev, state.scope_key
        req.held, req.reach = holds.load(state.held), pull.Reach.load(state.reach)
        req.dump = Dump.load(state.dump)
        if state.resume_rev is not None and req.cursor == state.resume_rev:
            # A later page of a paged pull: the device's edits are as old as its first page.
            start = state.pull_start_rev
    scope = scope_for(session, user)
    result = pull.pull(session, scope, req)
    _note_device(
        user.id,
        "last_pull_at",
        last_pulled_rev=result["timestamp"],
        pull_start_rev=start,
        resume_rev=result["timestamp"] if result["has_more"] else None,
        scope_key=pull.scope_key(user.role),
        held=holds.dump(req.held),
        reach=pull.dump_reach(req.reach),
        dump=dump_text(req.dump),
    )
    db.commit()
    return _json(result)


@blp.route("/pull", methods=["GET"])
@blp.doc(parameters=[DEVICE_HEADER])
# Schema instances, made once: a pull would otherwise build its schema on every request.
@blp.arguments(PullArgs(), location="query")
@blp.response(200, PullOut)
@documented(blp, 400, 401, 422)
def pull_get(args):
    """Changes since `last_pulled_at` in your scope, paged (`has_more`), with the new cursor."""
    return _do_pull(args)


@blp.route("/pull", methods=["POST"])
@blp.doc(parameters=[DEVICE_HEADER])
@blp.arguments(PullBodyArgs(), required=False)
@blp.response(200, PullOut)
@documented(blp, 400, 401, 422)
def pull_post(args):
    """The same pull with its parameters in a JSON body."""
    return _do_pull(args)


def _known_as_of(state: DeviceState | None) -> int | None:
    """The rev as of which the device knew the records it edits without a base_rev: where its
    last pull started (edits made before that pull merged into it), or, after a first pull
    from nothing, where that pull ended (the device had no server record to edit before it)."""
    if state is None:
        return None
    if state.pull_start_rev is None or state.pull_start_rev <= 0:  # a pull from nothing
        return state.last_pulled_rev
    return state.pull_start_rev


@blp.route("/push", methods=["POST"])
@blp.doc(parameters=[DEVICE_HEADER])
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": PushBody}}})
@blp.response(200, PushOut)
@documented(blp, 400, 401, 403, 409, 413, 422)
@login_required
def push_changes():
    """Apply a device's changes all-or-nothing; refused changes come back as conflicts."""
    g.device_id = _device_id()
    scope = current_scope()
    scope.require_role(INSPECTOR, REGIONAL_MANAGER)
    session = db.session()
    try:
        try:
            return _push(session, scope, assume_new=True)
        except push.AssumedNewExists:
            # A record the fast path took as new is on the server: the whole request again in
            # a new transaction (its replay check and device state too), every record looked up.
            session.rollback()
            return _push(session, scope, assume_new=False)
    except DomainError:
        session.rollback()
        _push_refused(session, scope.user_id)
        raise


def _push_refused(session: Session, user_id: str) -> None:
    """A refused push changes nothing but this: it carried none of the edits the device made
    at the sites it lost, so their deletions wait for one the server accepts (sync/holds.py)."""
    state = session.get(DeviceState, (user_id, g.device_id))
    held = holds.load(state.held if state is not None else None)
    if held:
        state.held = holds.dump(holds.refused(held))
        session.commit()


def _push(session: Session, scope: Scope, assume_new: bool) -> Response:
    """The push request in one transaction: replay, plan, write, bookkeeping, commit."""
    key = idempotency.normal_key(request.headers.get("Idempotency-Key"))
    digest = idempotency.body_hash(request.get_data(cache=True)) if key else ""
    if key:
        stored = idempotency.replay(session, scope.user_id, key, digest)
        if stored is not None:
            return _json(stored[1], stored[0])
    state = session.get(DeviceState, (scope.user_id, g.device_id))
    session.info["device_id"] = g.device_id
    result = push.push(
        session,
        scope=scope,
        device_id=g.device_id,
        body=g.json_body,
        rules=sync_rules(),
        max_records=current_app.config["SYNC_PUSH_MAX_RECORDS"],
        now_ms=int(time.time() * 1000),
        pull_start=_known_as_of(state),
        assume_new=assume_new,
        pulled=None if state is None else state.last_pulled_rev,
    )
    # Its edits at the sites it lost are in: their deletions may go (sync/holds.py).
    held = holds.load(state.held if state is not None else None)
    cursor = g.json_body.get("last_pulled_at") if isinstance(g.json_body, dict) else None
    cursor = cursor if isinstance(cursor, int) else None
    ready = {"held": holds.dump(holds.pushed(held, cursor))} if held else {}
    _note_device(scope.user_id, "last_push_at", **ready)
    top = revs.stamp(session)
    result["timestamp"] = top if top is not None else revs.current_rev(session)
    if key:
        idempotency.remember(session, scope.user_id, key, digest, 200, result)
    session.commit()
    return _json(result)


def blueprints():
    """This module's blueprints."""
    return [blp]
