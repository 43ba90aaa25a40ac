"""Values a push may carry: empty required columns and out-of-range numbers are a 422 naming
table, id and column before anything is written; nothing is applied."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from store.models import Action, Attachment, Inspection, Response
from sync.tables import PUSHABLE
from tests.sync.device import random_id
from tests.sync_env import ANA, NORTH, new_inspection

# The last millisecond of year 9999 (UTC).
LAST_MS = 253_402_300_799_999


def _push(client: Any, dev: Any, changes: dict[str, Any], cursor: int) -> Any:
    # The standard library's encoder: the app's own refuses integers beyond 64 bits.
    return client.post(
        "/api/v1/sync/push",
        headers=dev.headers(),
        data=json.dumps({"changes": changes, "last_pulled_at": cursor}),
        content_type="application/json",
    )


def _refused(resp: Any, *keys: str) -> dict[str, Any]:
    """Assert a 422 invalid_push envelope naming each `table.id.column`."""
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    body = resp.get_json()
    assert body["code"] == 422 and body["reason"] == "invalid_push"
    assert "nothing applied" in body["message"]
    for key in keys:
        assert key in body["errors"], (key, body["errors"])
    return body


@pytest.fixture
def synced(env, device):
    """Ana's phone with an inspection, a response, an action and an attachment on the server."""
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env)
    rid = ana.create("responses", inspection_id=iid, item_key="clean", value='"yes"')
    aid = ana.create(
        "actions", site_id=env["sites"]["N-HOTEL"], title="Fix", status="open", inspection_id=iid
    )
    att = ana.create(
        "attachments",
        inspection_id=iid,
        response_id=rid,
        kind="photo",
        sha256="a" * 64,
        mime="image/jpeg",
        byte_size=10,
    )
    assert ana.sync()["conflicts"] == []
    ids = {"inspections": iid, "responses": rid, "actions": aid, "attachments": att}
    return ana, ids


MODELS = {
    "inspections": Inspection,
    "responses": Response,
    "actions": Action,
    "attachments": Attachment,
}


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("inspections", "site_id", ""),
        ("inspections", "template_id", None),
        ("inspections", "status", None),
        ("responses", "item_key", None),
        ("responses", "item_key", ""),
        ("responses", "inspection_id", ""),
        ("actions", "title", None),
        ("actions", "status", None),
        ("actions", "priority", None),
        ("actions", "site_id", ""),
        ("attachments", "kind", None),
    ],
)
def test_an_update_emptying_a_not_null_column_is_refused(synced, client, db, table, column, value):
    ana, ids = synced
    rid = ids[table]
    before = getattr(db.get(MODELS[table], rid), column)
    cursor = ana.pull()
    rec = {"id": rid, column: value, "_changed": column}
    _refused(_push(client, ana, {table: {"updated": [rec]}}, cursor), f"{table}.{rid}.{column}")
    db.expire_all()
    assert getattr(db.get(MODELS[table], rid), column) == before


def test_only_the_columns_an_update_applies_are_checked(synced, client, db):
    ana, ids = synced
    aid = ids["actions"]
    # A full raw record whose `_changed` names another column: its null title is not applied.
    rec = {"id": aid, "title": None, "description": "why", "_changed": "description"}
    resp = _push(client, ana, {"actions": {"updated": [rec]}}, ana.pull())
    assert resp.status_code == 200, resp.get_json()
    db.expire_all()
    assert (db.get(Action, aid).title, db.get(Action, aid).description) == ("Fix", "why")
    rec["_changed"] = "title,description"
    resp = _push(client, ana, {"actions": {"updated": [rec]}}, ana.pull())
    _refused(resp, f"actions.{aid}.title")


@pytest.mark.parametrize("count", [1, 60])  # 60: the bulk insert path (sync/writer.py)
def test_created_responses_without_item_key_are_refused(env, device, client, db, count):
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    cursor = ana.pull()
    made = [{"id": random_id(), "inspection_id": iid, "value": '"yes"'} for _ in range(count)]
    body = _refused(
        _push(client, ana, {"responses": {"created": made}}, cursor),
        *(f"responses.{r['id']}.item_key" for r in made[:10]),
    )
    assert body["errors"][f"responses.{made[0]['id']}.item_key"] == ["is required"]
    assert db.query(Response).filter(Response.inspection_id == iid).count() == 0


def test_created_records_need_what_the_server_cannot_fill(env, device, client, db):
    ana = device(ANA)
    cursor = ana.pull()
    site = env["sites"]["N-HOTEL"]
    iid, rid, aid, att = (random_id() for _ in range(4))
    # Status, title, priority, kind and children's sites are the server's defaults.
    minimal = {
        "inspections": {"created": [{"id": iid, "template_id": env["template"], "site_id": site}]},
        "responses": {"created": [{"id": rid, "inspection_id": iid, "item_key": "clean"}]},
        "actions": {"created": [{"id": aid, "inspection_id": iid}]},
        "attachments": {"created": [{"id": att, "inspection_id": iid}]},
    }
    resp = _push(client, ana, minimal, cursor)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).site_id == site and db.get(Attachment, att).kind == "photo"

    cursor = ana.pull()
    i2, r2 = random_id(), random_id()
    lacking = {
        "inspections": {"created": [{"id": i2, "template_id": env["template"], "site_id": ""}]},
        "responses": {"created": [{"id": r2, "item_key": "clean"}]},
    }
    _refused(
        _push(client, ana, lacking, cursor),
        f"inspections.{i2}.site_id",
        f"responses.{r2}.inspection_id",
    )
    db.expire_all()
    assert db.get(Inspection, i2) is None and db.get(Response, r2) is None


def test_not_null_flags_match_the_database():
    for name, spec in PUSHABLE.items():
        for column in spec.writable:
            col = spec.columns[column]
            assert col.nullable == spec.table.c[column].nullable, f"{name}.{column}"
            assert not (col.required and col.nullable), f"{name}.{column}"


def test_an_unwrapped_driver_integrity_error_is_a_409_envelope(app):
    # SQLite's bulk insert (sync/writer.py) runs on the driver's connection, so a refusal by
    # the database arrives as sqlite3's own error, not SQLAlchemy's: still the 409 envelope.
    with app.test_request_context("/api/v1/sync/push", method="POST"):
        resp = app.make_response(
            app.handle_user_exception(sqlite3.IntegrityError("NOT NULL constraint failed"))
        )
    assert resp.status_code == 409
    body = resp.get_json()
    assert body["code"] == 409 and body["reason"] == "integrity_conflict" and body["message"]


@pytest.mark.parametrize("size", [2**53, 2**63, 2**70, 1e308])
def test_an_impossible_byte_size_is_refused(synced, client, size):
    ana, ids = synced
    cursor = ana.pull()
    att = random_id()
    rec = {
        "id": att,
        "inspection_id": ids["inspections"],
        "kind": "photo",
        "sha256": "b" * 64,
        "mime": "image/jpeg",
        "byte_size": size,
    }
    body = _refused(
        _push(client, ana, {"attachments": {"created": [rec]}}, cursor),
        f"attachments.{att}.byte_size",
    )
    assert body["errors"][f"attachments.{att}.byte_size"][0].startswith("must be at most")


def test_a_time_after_year_9999_is_refused(env, device, client, api, db):
    ana = device(ANA)
    cursor = ana.pull()
    site = env["sites"]["N-HOTEL"]
    late, last = random_id(), random_id()
    over = {"id": late, "site_id": site, "title": "far", "due_at": LAST_MS + 1}
    _refused(_push(client, ana, {"actions": {"created": [over]}}, cursor), f"actions.{late}.due_at")
    ok = {"id": last, "site_id": site, "title": "far", "due_at": LAST_MS}
    assert _push(client, ana, {"actions": {"created": [ok]}}, ana.pull()).status_code == 200
    for path in ("/actions", f"/actions/{last}"):
        resp = api.get(path, NORTH)
        assert resp.status_code == 200, (path, resp.status_code, resp.get_json())
    assert db.get(Action, late) is None


def test_an_update_of_a_record_the_server_never_had_needs_what_a_creation_needs(
    env, device, client, db
):
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    made = {"id": random_id(), "inspection_id": iid, "value": '"yes"'}  # no item_key
    resp = _push(client, ana, {"responses": {"updated": [made]}}, ana.pull())
    body = _refused(resp, f"responses.{made['id']}.item_key")
    assert body["errors"][f"responses.{made['id']}.item_key"] == ["is required"]
    assert db.get(Response, made["id"]) is None


@pytest.mark.parametrize("bad", ["abc\n", "abc\r\n", "a b", ""])
def test_record_ids_are_the_whole_string(env, device, client, db, bad):
    # A regex `$` also matches before a final newline: "abc\n" must not pass as an id.
    ana = device(ANA)
    cursor = ana.pull()
    rec = {"id": bad, "site_id": env["sites"]["N-HOTEL"], "template_id": env["template"]}
    resp = _push(client, ana, {"inspections": {"created": [rec]}}, cursor)
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert db.query(Inspection).filter(Inspection.id == bad).count() == 0
    ref = {"id": random_id(), "site_id": env["sites"]["N-HOTEL"], "template_id": bad}
    resp = _push(client, ana, {"inspections": {"created": [ref]}}, cursor)
    assert resp.status_code == 422 or bad == "", (resp.status_code, resp.get_json())
