"""The authorization matrix, generated from the OpenAPI document: every operation, as every role,
on a record of the caller's own region and on one of the other region's.

North's manager and inspector must never read or change anything of South (404 or 403, and
nothing of South in any answer), anonymous callers get 401, and a refused call stores nothing.
A new endpoint without a rule here fails the suite. test_scope.py holds the hand-written cases
(every account's exact site, region and user lists); this module sweeps every operation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sync.tables import TABLES, Col
from tests.authz_world import PARAMS, Side, World, document_app, pristine, state
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.sync_env import BODY

ROLES = {"inspector": ANA, "manager": NORTH, "hq": HQ_EMAIL, "anonymous": None}
ALL = frozenset({"inspector", "manager", "hq"})
REVIEWERS = frozenset({"manager", "hq"})
HQ = frozenset({"hq"})
DEVICE = {"X-Device-Id": "authz-matrix"}
# Bookkeeping a call may write whatever it is answered: sign-ins and device sync state.
BOOKKEEPING = frozenset({"refresh_tokens", "device_states"})
PERIOD = {"start": "2020-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


@dataclass(frozen=True)
class Rule:
    """Who may call an operation on their own region's record, and how to call it."""

    may: frozenset[str]  # roles answered `ok` in scope; other signed-in roles get `refused`
    ok: int = 200
    refused: int = 403
    body: Callable[[World, Side], Any] | None = None
    query: Callable[[World, Side], dict] | None = None
    data: Callable[[World, Side], bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)  # path parameter -> Side field
    aimed: bool = True  # the call names a record; False: org-wide, nothing is out of scope
    public: bool = False  # anonymous callers are served too
    shows: str | None = None  # Side field whose id a successful answer names
    # Answers on the other region's record; None: domain.md's rule, 404 for a read (nothing
    # says it exists) and 403 for a write.
    outside: frozenset[int] | None = None
    outside_writes: frozenset[str] = frozenset()  # tables a refusal records itself in


def _list(shows: str, key: str, field_name: str, may: frozenset[str] = ALL) -> Rule:
    """A list filtered to one region's record: answered, but with nothing of the other."""
    return Rule(
        may,
        query=lambda w, s: {key: getattr(s, field_name)},
        shows=shows,
        outside=frozenset({200}),
    )


def _report(**extra: Any) -> Rule:
    return Rule(
        ALL, query=lambda w, s: {**PERIOD, "site_id": s.site, **extra}, outside=frozenset({200})
    )


def _push(w: World, s: Side) -> dict:
    """A device edits the side's open inspection (a note), knowing the server's state."""
    record = {
        "id": s.open_inspection,
        "notes": "edited on a phone",
        "base_rev": w.cursor,
        "_status": "updated",
        "_changed": "notes",
    }
    changes = {"inspections": {"created": [], "updated": [record], "deleted": []}}
    return {"changes": changes, "last_pulled_at": w.cursor}


def _sha(s: Side) -> str:
    return hashlib.sha256(s.photo).hexdigest()


MATRIX: dict[str, Rule] = {
    "GET /api/v1/health": Rule(ALL, aimed=False, public=True),
    "POST /api/v1/auth/login": Rule(
        ALL,
        aimed=False,
        public=True,
        body=lambda w, s: {"email": ANA, "password": "demo-pass-2026"},
    ),
    "POST /api/v1/auth/refresh": Rule(
        ALL, aimed=False, public=True, body=lambda w, s: {"refresh_token": w.refresh_token}
    ),
    "POST /api/v1/auth/logout": Rule(
        ALL,
        ok=204,
        aimed=False,
        public=True,
        body=lambda w, s: {"refresh_token": w.refresh_token},
    ),
    "GET /api/v1/me": Rule(ALL, aimed=False, shows="site"),
    # --- organisation ---
    "GET /api/v1/regions": Rule(ALL, aimed=False, shows="region"),
    "POST /api/v1/regions": Rule(
        HQ, ok=201, aimed=False, body=lambda w, s: {"name": "East", "code": "E"}
    ),
    "GET /api/v1/regions/{region_id}": Rule(ALL, shows="region"),
    "PATCH /api/v1/regions/{region_id}": Rule(HQ, body=lambda w, s: {"name": f"Renamed {s.code}"}),
    # Both regions hold sites and users, so even HQ is told to empty them first.
    "DELETE /api/v1/regions/{region_id}": Rule(HQ, ok=422),
    "GET /api/v1/sites": _list("site", "region_id", "region"),
    "POST /api/v1/sites": Rule(
        HQ,
        ok=201,
        body=lambda w, s: {"region_id": s.region, "name": "New", "code": f"NEW-{s.code}"},
    ),
    "GET /api/v1/sites/{site_id}": Rule(ALL, shows="site"),
    "PATCH /api/v1/sites/{site_id}": Rule(HQ, body=lambda w, s: {"name": "Renamed"}),
    "DELETE /api/v1/sites/{site_id}": Rule(HQ, ok=204),
    "GET /api/v1/users": _list("user", "region_id", "region"),
    "POST /api/v1/users": Rule(
        HQ,
        ok=201,
        body=lambda w, s: {
            "email": f"new.{s.code.lower()}@demo.example",
            "name": "New",
            "role": "inspector",
            "region_id": s.region,
            "password": "long-enough-password",
        },
    ),
    "GET /api/v1/users/{user_id}": Rule(ALL, shows="user"),
    "PATCH /api/v1/users/{user_id}": Rule(HQ, body=lambda w, s: {"name": "Renamed"}),
    "GET /api/v1/assignments": _list("assignment", "site_id", "site"),
    "POST /api/v1/assignments": Rule(
        HQ, ok=201, body=lambda w, s: {"user_id": w.users[BEN], "site_id": s.spare_site}
    ),
    "DELETE /api/v1/assignments/{assignment_id}": Rule(HQ, ok=204),
    # --- templates: org-wide, every signed-in user reads the published ones ---
    "GET /api/v1/templates": Rule(ALL, aimed=False, shows="template"),
    "POST /api/v1/templates": Rule(
        HQ,
        ok=201,
        aimed=False,
        body=lambda w, s: {
            "template_key": "authz_probe",
            "category": "hygiene",
            "title": {"zh": "权限", "en": "Authz"},
            "body": BODY,
        },
    ),
    "GET /api/v1/templates/{template_id}": Rule(ALL, aimed=False, shows="template"),
    "PATCH /api/v1/templates/{template_id}": Rule(
        HQ, aimed=False, body=lambda w, s: {"title": {"zh": "改名", "en": "Renamed"}}
    ),
    "POST /api/v1/templates/{template_id}/publish": Rule(HQ, ok=201, aimed=False),
    "GET /api/v1/templates/{template_id}/versions": Rule(ALL, aimed=False, shows="version"),
    "GET /api/v1/template-versions/{version_id}": Rule(ALL, aimed=False, shows="version"),
    # --- sync: the scope is in the answer (pull) or in what is stored (push) ---
    "GET /api/v1/sync/pull": Rule(ALL, aimed=False, headers=DEVICE, shows="inspection"),
    "POST /api/v1/sync/pull": Rule(
        ALL, aimed=False, headers=DEVICE, body=lambda w, s: {}, shows="inspection"
    ),
    "POST /api/v1/sync/push": Rule(
        frozenset({"inspector", "manager"}),
        headers=DEVICE,
        body=_push,
        outside=frozenset({200}),
        outside_writes=frozenset({"conflicts"}),
    ),
    # --- review ---
    "GET /api/v1/conflicts": _list("conflict", "site_id", "site", REVIEWERS),
    "GET /api/v1/conflicts/{conflict_id}": Rule(REVIEWERS, shows="conflict"),
    "POST /api/v1/conflicts/{conflict_id}/resolve": Rule(
        REVIEWERS, body=lambda w, s: {"resolution": "keep_server"}
    ),
    "GET /api/v1/inspections": _list("inspection", "site_id", "site", REVIEWERS),
    "GET /api/v1/inspections/{inspection_id}": Rule(ALL, shows="inspection"),
    "POST /api/v1/inspections/{inspection_id}/approve": Rule(REVIEWERS, body=lambda w, s: {}),
    "POST /api/v1/inspections/{inspection_id}/return": Rule(
        REVIEWERS, body=lambda w, s: {"comment": "Check the fridge again"}
    ),
    "POST /api/v1/inspections/{inspection_id}/complete": Rule(
        frozenset({"inspector"}), records={"inspection_id": "open_inspection"}
    ),
    "POST /api/v1/inspections/{inspection_id}/archive": Rule(HQ),
    "GET /api/v1/inspections/{inspection_id}/audit": Rule(ALL),
    "GET /api/v1/inspections/{inspection_id}/report.pdf": Rule(ALL),
    "GET /api/v1/actions": _list("action", "site_id", "site"),
    "POST /api/v1/actions": Rule(
        ALL, ok=201, body=lambda w, s: {"site_id": s.site, "title": "Fix the door"}
    ),
    "GET /api/v1/actions/{action_id}": Rule(ALL, shows="action"),
    "POST /api/v1/actions/{action_id}/transition": Rule(
        ALL, body=lambda w, s: {"status": "in_progress"}
    ),
    "GET /api/v1/actions/{action_id}/audit": Rule(ALL),
    # --- evidence ---
    "POST /api/v1/attachments/{attachment_id}/upload": Rule(
        ALL,
        body=lambda w, s: {"sha256": _sha(s), "byte_size": len(s.photo), "mime": "image/jpeg"},
    ),
    "PUT /api/v1/attachments/{attachment_id}/content": Rule(
        ALL, data=lambda w, s: s.photo, headers={"Content-Type": "image/jpeg"}
    ),
    "POST /api/v1/attachments/{attachment_id}/complete": Rule(ALL),
    "GET /api/v1/attachments/{attachment_id}": Rule(ALL, shows="attachment"),
    "GET /api/v1/attachments/{attachment_id}/file": Rule(ALL),
    # --- schedules and reports ---
    "GET /api/v1/schedules": Rule(ALL, aimed=False, shows="schedule"),
    "POST /api/v1/schedules": Rule(
        HQ,
        ok=201,
        body=lambda w, s: {
            "template_id": s.template,
            "site_id": s.site,
            "recurrence": {"freq": "daily", "times": ["09:00"]},
        },
    ),
    "DELETE /api/v1/schedules/{schedule_id}": Rule(HQ),
    "GET /api/v1/occurrences": _list("occurrence", "site_id", "site"),
    "GET /api/v1/reports/compliance": _report(group_by="site"),
    "GET /api/v1/reports/compliance.{fmt}": _report(),
    "GET /api/v1/reports/failing-items": _report(),
}
FIXED_PARAMS = {"fmt": "png"}


def _operations() -> tuple[dict, list[str], set[str]]:
    """The OpenAPI document, its operations, and every API route of the URL map."""
    app = document_app()
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    ops = [
        f"{method.upper()} {path}"
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    routes = {
        f"{method} {_openapi_path(rule.rule)}"
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.rule.startswith("/api/v1/") and rule.endpoint not in _DOCS_ENDPOINTS
    }
    return doc, ops, routes


def _openapi_path(rule: str) -> str:
    """/sites/<site_id> and /x.<any(a, b):fmt> -> /sites/{site_id} and /x.{fmt}."""
    return re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule)


_DOCS_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui"}
DOC, OPERATIONS, ROUTES = _operations()


def test_every_route_is_documented_and_has_a_rule():
    """A new endpoint fails here until it is documented and given a matrix entry."""
    assert sorted(ROUTES - set(OPERATIONS)) == []
    assert sorted(set(OPERATIONS) - set(MATRIX)) == []
    assert sorted(set(MATRIX) - set(OPERATIONS)) == []  # no rule for a removed endpoint


# --- one call, and what must hold of its answer ------------------------------------------


@dataclass
class Call:
    """A request built from a rule for one side's record."""

    method: str
    path: str
    kwargs: dict[str, Any]
    sent: str  # everything the caller named: echoing it back reveals nothing

    @classmethod
    def build(cls, op: str, rule: Rule, world: World, side: Side, email: str | None) -> Call:
        method, template = op.split(" ", 1)
        path = re.sub(r"{(\w+)}", lambda m: _param(rule, side, m.group(1)), template)
        kwargs: dict[str, Any] = {"headers": world.headers(email, **rule.headers)}
        if rule.body:
            kwargs["json"] = rule.body(world, side)
        if rule.query:
            kwargs["query_string"] = rule.query(world, side)
        if rule.data:
            kwargs["data"] = rule.data(world, side)
        sent = f"{path} {kwargs.get('json')} {kwargs.get('query_string')}"
        return cls(method, path, kwargs, sent)


def _param(rule: Rule, side: Side, name: str) -> str:
    if name in FIXED_PARAMS:
        return FIXED_PARAMS[name]
    return getattr(side, rule.records.get(name) or PARAMS[name])


def _send(client: Any, call: Call) -> Any:
    return client.open(call.path, method=call.method, **call.kwargs)


def _changed_tables(app: Any, allowed: frozenset[str]) -> list[str]:
    """Tables whose rows differ from the untouched world (bookkeeping and `allowed` aside)."""
    before, after = pristine(app), state(app)
    skip = BOOKKEEPING | allowed
    return sorted(t for t in after if t not in skip and after[t] != before.get(t))


def _only_revs_moved(app: Any, table: str) -> None:
    """The table's rows are as in the untouched world but for their revs (and the flag that
    says an inspection has conflicts)."""
    revs = {"server_rev", "updated_at", "col_revs", "has_conflicts"}

    def strip(rows: dict[tuple, dict]) -> dict[tuple, dict]:
        return {k: {c: v for c, v in r.items() if c not in revs} for k, r in rows.items()}

    assert strip(state(app)[table]) == strip(pristine(app)[table])


def _leaks(world: World, call: Call, resp: Any) -> list[str]:
    """South ids in an answer that the caller did not send themselves."""
    raw = resp.get_data()  # bytes: PDFs, charts and photos are searched too
    return sorted(i for i in world.foreign if i.encode() in raw and i not in call.sent)


def _expect(resp: Any, statuses: frozenset[int] | int, call: Call) -> None:
    wanted = {statuses} if isinstance(statuses, int) else statuses
    body = resp.get_data()[:300]
    assert resp.status_code in wanted, (call.method, call.path, resp.status_code, body)


# --- the matrix --------------------------------------------------------------------------


def _outside(client, app, world, op, rule, role) -> None:
    """The other region's record: refused (or answered without it), and nothing stored."""
    call = Call.build(op, rule, world, world.south, ROLES[role])
    resp = _send(client, call)
    if role not in rule.may:
        expected = frozenset({403, 404})
    elif rule.outside is not None:
        expected = rule.outside
    else:
        expected = frozenset({404 if call.method == "GET" else 403})
    _expect(resp, expected, call)
    assert _leaks(world, call, resp) == []
    assert _changed_tables(app, rule.outside_writes) == [], (op, role)
    if resp.status_code == 200:
        _nothing_of_theirs(resp, call)


def _nothing_of_theirs(resp: Any, call: Call) -> None:
    """An answered call on the other region: an empty list, or a push refused as a conflict."""
    body = resp.get_json(silent=True)
    if isinstance(body, list):
        assert body == [], (call.method, call.path, body[:2])
    if isinstance(body, dict) and "conflicts" in body:
        assert {c["kind"] for c in body["conflicts"]} == {"out_of_scope"}, body


def _inside(client, app, world, op, rule, role, side) -> None:
    """A record the role may reach: served to the allowed roles, refused to the others."""
    call = Call.build(op, rule, world, side, ROLES[role])
    resp = _send(client, call)
    if role not in rule.may:
        _expect(resp, rule.refused, call)
        assert _changed_tables(app, frozenset()) == [], (op, role)
        return
    _expect(resp, rule.ok, call)
    if role != "hq":
        assert _leaks(world, call, resp) == []
    if rule.shows:
        assert getattr(side, rule.shows).encode() in resp.get_data(), (op, role)


def _anonymous(client, app, world, op, rule) -> None:
    call = Call.build(op, rule, world, world.north, None)
    resp = _send(client, call)
    _expect(resp, rule.ok if rule.public else 401, call)
    if not rule.public:
        assert _changed_tables(app, frozenset()) == [], op


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("op", OPERATIONS)
def test_matrix(client, app, world, op, role):
    """One operation as one role: South first (must change nothing), then North."""
    assert op in MATRIX, f"{op} has no authorization rule: add one to MATRIX"
    rule = MATRIX[op]
    if role == "anonymous":
        _anonymous(client, app, world, op, rule)
        return
    if rule.aimed and role != "hq":
        _outside(client, app, world, op, rule, role)
    if rule.aimed and role == "hq":
        _inside(client, app, world, op, rule, role, world.south)  # HQ's scope is everything
    _inside(client, app, world, op, rule, role, world.north)


# --- mass assignment: what the server owns is refused or ignored, over REST and sync --------

# Fields the server computes or stamps; no input may set them unless its schema declares one
# (as a transition declares `status`, checked by the lifecycle rules below).
SERVER_FIELDS = (
    "id",
    "server_rev",
    "created_at",
    "updated_at",
    "deleted_at",
    "score",
    "max_score",
    "score_percent",
    "grade",
    "passed",
    "critical_failed",
    "media_complete",
    "has_conflicts",
    "status",
    "review_state",
    "review_comment",
    "reviewed_by",
    "reviewed_at",
    "reviewer",
    "inspector_id",
    "created_by",
    "verified_by",
    "verified_at",
    "resolved_at",
    "uploaded",
    "uploaded_by",
    "pending_upload",
    "width",
    "height",
    "source",
    "password_hash",
    "latest_version",
    "published_by",
)


def _declared(op: str) -> set[str]:
    """Properties of an operation's JSON request body in the OpenAPI document."""
    method, path = op.split(" ", 1)
    body = DOC["paths"][path][method.lower()].get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return set(schema.get("properties", {}))


# Every REST operation that takes a JSON object (sync push carries records: tested below).
BODY_OPS = [
    op
    for op in OPERATIONS
    if op in MATRIX and MATRIX[op].body and _declared(op) and op != "POST /api/v1/sync/push"
]


@pytest.mark.parametrize("op", BODY_OPS)
def test_rest_bodies_refuse_server_owned_fields(client, app, world, op):
    """As HQ, who may most: each server-owned field is a 422 naming it, and nothing is stored."""
    forged = {name: "forged" for name in SERVER_FIELDS if name not in _declared(op)}
    call = Call.build(op, MATRIX[op], world, world.north, HQ_EMAIL)
    call.kwargs["json"] = {**call.kwargs["json"], **forged}
    resp = _send(client, call)
    assert resp.status_code == 422, resp.get_data()[:300]
    assert set(resp.get_json()["errors"]) == set(forged)
    assert _changed_tables(app, frozenset()) == []


_FORGED = {
    "id": "forged-id",
    "str": "forged",
    "text": "forged",
    "int": 4242,
    "ms": 1_234_567_890_123,
    "float": 87.5,
}
# Stamped by the server on every write; everything else a device does not own must not move.
REV_STAMPS = frozenset({"server_rev", "updated_at", "col_revs"})


def _forge(col: Col, current: Any) -> Any:
    """A value of the column's kind that differs from the stored one."""
    if col.kind == "bool":
        return not current
    value = _FORGED[col.kind]
    return value if value != current else None


def _server_columns(table: str) -> list[str]:
    """Columns of a synced table that no device owns."""
    spec = TABLES[table]
    return sorted(c.name for c in spec.table.c if c.name not in spec.writable | REV_STAMPS)


def _push(client: Any, world: World, changes: dict, email: str = ANA) -> Any:
    body = {"changes": changes, "last_pulled_at": world.cursor}
    return client.post("/api/v1/sync/push", json=body, headers=world.headers(email, **DEVICE))


def _updated(table: str, record: dict) -> dict:
    """A push that updates one record the way WatermelonDB sends it."""
    changed = ",".join(k for k in record if k != "id")
    rec = {**record, "_status": "updated", "_changed": changed}
    return {table: {"created": [], "updated": [rec], "deleted": []}}


# (table, Side field of ANA's record, a column she may change, its new value)
UPDATES = [
    ("inspections", "open_inspection", "notes", "checked twice"),
    ("responses", "open_response", "note", "checked twice"),
    ("actions", "action", "description", "door hinge"),
]


@pytest.mark.parametrize("table,record,column,value", UPDATES, ids=[u[0] for u in UPDATES])
def test_push_update_ignores_server_owned_columns(client, app, world, table, record, column, value):
    """Every server-owned wire column forged on an update: the edit lands, they do not."""
    rid = getattr(world.north, record)
    before = pristine(app)[table][(rid,)]
    spec = TABLES[table]
    forged = {c: _forge(spec.columns[c], before[c]) for c in sorted(spec.server_owned)}
    # The device knows the record as it stands (base_rev): the edit is no concurrent edit, whose
    # conflict would rightly set the inspection's has_conflicts.
    known = {"id": rid, "base_rev": before["server_rev"]}
    resp = _push(client, world, _updated(table, {**known, column: value, **forged}))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["conflicts"] == []
    after = state(app)[table][(rid,)]
    assert after[column] == value  # accepted: the device's own column changed
    kept = _server_columns(table)
    assert {c: after[c] for c in kept} == {c: before[c] for c in kept}


def _twins(world: World, forged: bool) -> dict[str, dict]:
    """A new inspection, an answer, a photo record, an action; forged: every server column."""
    tag = "forged" if forged else "plain"
    n = world.north
    records = {
        "inspections": {
            "template_id": n.version,
            "site_id": n.site,
            "status": "in_progress",
            "started_at": 1_795_000_000_000,
        },
        "responses": {"inspection_id": f"i-{tag}", "item_key": "clean", "value": '"yes"'},
        "attachments": {
            "inspection_id": f"i-{tag}",
            "response_id": f"r-{tag}",
            "kind": "photo",
            "sha256": hashlib.sha256(tag.encode()).hexdigest(),
            "mime": "image/jpeg",
            "byte_size": 10,
        },
        "actions": {"inspection_id": f"i-{tag}", "title": "Fix the door", "priority": "low"},
    }
    changes = {}
    for table, rec in records.items():
        spec = TABLES[table]
        extra = {c: _forge(spec.columns[c], None) for c in spec.server_owned} if forged else {}
        rid = f"{table[0]}-{tag}"
        changes[table] = {"created": [{"id": rid, **rec, **extra}], "updated": [], "deleted": []}
    return changes


def test_push_create_ignores_server_owned_columns(client, app, world):
    """Twin records, one forging every server-owned column: both are stored alike."""
    for forged in (False, True):
        resp = _push(client, world, _twins(world, forged))
        assert resp.status_code == 200 and resp.get_json()["conflicts"] == [], resp.get_json()
    rows = state(app)
    for table in ("inspections", "responses", "attachments", "actions"):
        plain, forged = rows[table][(f"{table[0]}-plain",)], rows[table][(f"{table[0]}-forged",)]
        kept = [c for c in _server_columns(table) if c not in ("id", "created_at")]
        assert {c: forged[c] for c in kept} == {c: plain[c] for c in kept}, table
    assert rows["inspections"][("i-forged",)]["inspector_id"] == world.users[ANA]


def _hidden() -> list[tuple[str, str]]:
    """(table, column) stored for a synced table but outside its wire contract."""
    return [
        (name, c.name)
        for name in ("inspections", "responses", "attachments", "actions")
        for c in TABLES[name].table.c
        if c.name not in TABLES[name].columns and c.name not in ("id", "server_rev")
    ]


HIDDEN = _hidden()
PUSHED_RECORD = {
    "inspections": "open_inspection",
    "responses": "open_response",
    "attachments": "attachment",
    "actions": "action",
}


@pytest.mark.parametrize("table,column", HIDDEN, ids=[f"{t}.{c}" for t, c in HIDDEN])
def test_push_refuses_columns_outside_the_contract(client, app, world, table, column):
    """Stamps, flags and reviewer fields devices never see: a 422 naming them, nothing stored."""
    rid = getattr(world.north, PUSHED_RECORD[table])
    resp = _push(client, world, _updated(table, {"id": rid, column: "forged"}))
    assert resp.status_code == 422, resp.get_json()
    assert f"{table}.{rid}.{column}" in resp.get_json()["errors"]
    assert _changed_tables(app, frozenset()) == []


def test_push_cannot_set_server_rev(client, app, world):
    """server_rev is WatermelonDB bookkeeping a device echoes back: the server stamps its own."""
    rid = world.north.open_inspection
    record = {"id": rid, "notes": "checked twice", "server_rev": 2**50}
    assert _push(client, world, _updated("inspections", record)).status_code == 200
    after = state(app)["inspections"][(rid,)]
    assert after["notes"] == "checked twice" and after["server_rev"] != 2**50


# A device moving a status where only review (or nobody) may: (table, record, new status)
PUSHED_JUMPS = [
    ("inspections", "open_inspection", "approved"),
    ("inspections", "open_inspection", "archived"),
    ("inspections", "inspection", "in_progress"),
    ("actions", "action", "verified"),
]


@pytest.mark.parametrize("table,record,status", PUSHED_JUMPS)
def test_push_status_jumps_are_conflicts_and_change_nothing(
    client, app, world, table, record, status
):
    """The push is answered with a conflict for the record, and the record keeps its status."""
    rid = getattr(world.north, record)
    resp = _push(client, world, _updated(table, {"id": rid, "status": status}))
    assert resp.status_code == 200, resp.get_json()
    assert rid in {c["id"] for c in resp.get_json()["conflicts"]}
    before, after = pristine(app)[table][(rid,)], state(app)[table][(rid,)]
    assert after["status"] == before["status"]


# The same jumps over REST: (who, path template, body)
REST_JUMPS = [
    (NORTH, "/inspections/{open_inspection}/approve", {}),  # not completed yet
    (HQ_EMAIL, "/inspections/{open_inspection}/return", {"comment": "no"}),
    (ANA, "/actions/{action}/transition", {"status": "verified"}),  # skips resolving
    (NORTH, "/actions/{action}/transition", {"status": "resolved", "note": "done"}),  # no photo
]


@pytest.mark.parametrize("email,path,body", REST_JUMPS)
def test_rest_status_jumps_are_refused(client, app, world, email, path, body):
    """Refused with a 4xx naming why, and nothing stored."""
    url = "/api/v1" + re.sub(r"{(\w+)}", lambda m: getattr(world.north, m.group(1)), path)
    resp = client.post(url, json=body, headers=world.headers(email))
    assert resp.status_code in (403, 409, 422), resp.get_json()
    assert resp.get_json()["reason"]
    assert _changed_tables(app, frozenset()) == []


def _created(table: str, record: dict) -> dict:
    return {table: {"created": [record], "updated": [], "deleted": []}}


# Writes into South by a North device: (name, changes built from the world)
FOREIGN_PUSHES = {
    "new inspection at a South site": lambda w: _created(
        "inspections",
        {"id": "x-insp", "template_id": w.south.version, "site_id": w.south.site},
    ),
    "answer on a South inspection": lambda w: _created(
        "responses",
        {"id": "x-resp", "inspection_id": w.south.open_inspection, "item_key": "clean"},
    ),
    "photo on a South action": lambda w: _created(
        "attachments", {"id": "x-att", "action_id": w.south.action, "kind": "photo"}
    ),
    "action at a South site": lambda w: _created(
        "actions", {"id": "x-act", "site_id": w.south.site, "title": "Mine now"}
    ),
    "edit of a South answer": lambda w: _updated(
        "responses", {"id": w.south.open_response, "value": '"no"'}
    ),
    "own inspection moved to South": lambda w: _updated(
        "inspections", {"id": w.north.open_inspection, "site_id": w.south.site}
    ),
    "deletion of a South inspection": lambda w: {
        "inspections": {"created": [], "updated": [], "deleted": [w.south.open_inspection]}
    },
}


@pytest.mark.parametrize("email", [ANA, NORTH], ids=["inspector", "manager"])
@pytest.mark.parametrize("case", list(FOREIGN_PUSHES))
def test_pushes_into_the_other_region_are_conflicts(client, app, world, email, case):
    """Answered 200 with an out-of-scope conflict; nothing stored besides that conflict."""
    resp = _push(client, world, FOREIGN_PUSHES[case](world), email)
    assert resp.status_code == 200, resp.get_json()
    assert {c["kind"] for c in resp.get_json()["conflicts"]} == {"out_of_scope"}
    allowed = frozenset({"conflicts"})
    if case == "own inspection moved to South":
        # The refused move bumps the inspection's rev, so the device moves it back; the
        # inspection stays where it was.
        allowed |= {"inspections"}
        _only_revs_moved(app, "inspections")
    assert _changed_tables(app, allowed) == []
