"""The sync contract end to end against the real app and database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from store.models import Conflict, Inspection, Response, Site
from tests.sync.device import SyncFailed
from tests.sync_env import (
    ANA,
    BEN,
    HQ_EMAIL,
    NORTH,
    SOUTH,
    answer,
    elsewhere,
    new_inspection,
    now_ms,
)


def test_first_pull_is_scoped_and_sends_creations_as_updates(env, device):
    ana = device(ANA)
    ana.sync()
    sites = {s["code"] for s in ana.live("sites").values()}
    assert sites == {"N-HOTEL", "N-CANTEEN"}
    tpl = ana.get("templates", env["template"])
    assert tpl is not None and json.loads(tpl["body"])["sections"][0]["key"] == "main"
    assert tpl["title_zh"] == "同步测试"
    ben = device(BEN)
    ben.sync()
    assert {s["code"] for s in ben.live("sites").values()} == {"N-HOTEL", "S-HOTEL"}


def test_an_inspector_with_no_site_pulls_the_templates_and_nothing_else(env, device, api):
    ana = device(ANA)
    ana.sync()
    new_inspection(ana, env)
    ana.sync()
    api.new_user("new@demo.example", "pw-new-2026")
    newcomer = device("new@demo.example")
    newcomer.sync()
    assert newcomer.get("templates", env["template"]) is not None
    for name in ("sites", "inspections", "responses", "occurrences", "actions", "attachments"):
        assert newcomer.live(name) == {}, name


def test_push_then_other_device_pulls_scores_computed(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 4)
    result = phone.sync()
    assert result["ok"] is True and result["conflicts"] == []
    tablet = device(ANA, "tablet")
    tablet.sync()
    insp = tablet.get("inspections", iid)
    assert insp["status"] == "in_progress"
    assert insp["score"] == 2 and insp["max_score"] == 2 and insp["score_percent"] == 100.0
    assert insp["inspector_id"] == env["users"][ANA]
    assert len([r for r in tablet.live("responses").values() if r["inspection_id"] == iid]) == 2
    # The same device's next pull brings the server-computed columns back to it.
    phone.sync()
    assert phone.get("inspections", iid)["score_percent"] == 100.0


def test_completion_scores_fails_and_opens_actions(env, device, db):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    phone.sync()
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    result = phone.sync()
    assert result["conflicts"] == []
    phone.sync()
    insp = phone.get("inspections", iid)
    assert insp["status"] == "completed"
    assert insp["passed"] is False and insp["critical_failed"] is True
    assert insp["score"] == 0 and insp["score_percent"] == 0.0
    actions = [a for a in phone.live("actions").values() if a["inspection_id"] == iid]
    assert sorted(a["priority"] for a in actions) == ["high", "medium"]
    failed = [r for r in phone.live("responses").values() if r["inspection_id"] == iid]
    assert all(r["failed"] for r in failed)


def test_completion_with_unanswered_required_items_is_a_conflict(env, device, db):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    phone.update("inspections", iid, status="completed")
    result = phone.sync()
    kinds = {c["kind"] for c in result["conflicts"]}
    assert "incomplete" in kinds
    detail = next(c for c in result["conflicts"] if c["kind"] == "incomplete")["detail"]
    assert "fridge" in detail
    phone.sync()
    assert phone.get("inspections", iid)["status"] == "in_progress"
    assert phone.get("inspections", iid)["has_conflicts"] is True


def test_retried_create_is_an_upsert_not_a_duplicate(env, device, db):
    phone = device(ANA)
    cursor = phone.pull()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    snapshot = {t: dict(phone.db[t]) for t in ("inspections", "responses")}
    import copy

    saved = copy.deepcopy(snapshot)
    phone.push(cursor)
    # The response was lost: the device still thinks both records are new and retries.
    for t, recs in saved.items():
        phone.db[t] = recs
    cursor = phone.pull()  # it pulls first, as WatermelonDB does
    phone.push(cursor)
    assert db.execute(select(func.count()).select_from(Inspection)).scalar() == 1
    assert db.execute(select(func.count()).select_from(Response)).scalar() == 1


def test_idempotency_key_replays_the_stored_response(env, device, client):
    phone = device(ANA)
    cursor = phone.pull()
    iid = new_inspection(phone, env)
    body = {
        "changes": {
            "inspections": {
                "created": [phone.db["inspections"][iid]["raw"]],
                "updated": [],
                "deleted": [],
            }
        },
        "last_pulled_at": cursor,
    }
    headers = phone.headers(**{"Idempotency-Key": "k-1"})
    first = client.post("/api/v1/sync/push", json=body, headers=headers)
    again = client.post("/api/v1/sync/push", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    body["last_pulled_at"] = cursor + 1
    other = client.post("/api/v1/sync/push", json=body, headers=headers)
    assert other.status_code == 422 and other.get_json()["reason"] == "idempotency_key_reused"


def _on_two_devices(env, device):
    """Ana's devices a and b, both holding an inspection a created; returns (a, b, its id)."""
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    return a, b, iid


def test_stale_push_is_409_listing_records_and_changes_nothing(env, device, db):
    a, b, iid = _on_two_devices(env, device)
    stale_cursor = a.last_pulled_at
    b.update("inspections", iid, notes="from b")
    b.sync()
    a.update("inspections", iid, notes="from a")
    try:
        a.push(stale_cursor)
        raise AssertionError("expected 409")
    except Exception as exc:  # SyncFailed
        assert exc.status == 409
        assert exc.body["reason"] == "stale_push"
        assert iid in exc.body["stale"]["inspections"]
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from b"
    # The client pulls and retries: it converges, and the overwrite is recorded.
    a.sync()
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from a"
    conflict = db.execute(select(Conflict).where(Conflict.record_id == iid)).scalar_one()
    assert conflict.kind == "concurrent_edit" and conflict.server_value == "from b"
    # The inspection shows it has a conflict to resolve, on the server and on the devices.
    assert db.get(Inspection, iid).has_conflicts is True
    b.sync()
    assert b.get("inspections", iid)["has_conflicts"] is True


def test_a_stale_edit_to_a_record_outside_scope_is_kept_as_a_conflict(env, device, api, db):
    """An inspector taken off a site while offline: an edit of its record that someone
    changed meanwhile is kept as an out_of_scope conflict, not refused as stale. A 409 would
    send the device to pull the site's deletions, and its edit would go with them."""
    a, b = device(ANA, "a"), device(ANA, "b")
    grant = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": env["users"][ANA], "site_id": env["sites"]["S-HOTEL"]},
    )
    a.sync()
    iid = new_inspection(a, env, site="S-HOTEL")
    a.sync()
    b.sync()
    stale_cursor = a.last_pulled_at
    b.update("inspections", iid, notes="from b")
    b.sync()
    api.delete(f"/assignments/{grant.get_json()['id']}", HQ_EMAIL)
    a.update("inspections", iid, notes="from a")
    result = a.push(stale_cursor)
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("out_of_scope", iid)]
    conflict = db.execute(select(Conflict).where(Conflict.record_id == iid)).scalar_one()
    assert conflict.device_value["notes"] == "from a"
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from b"


def test_a_cursor_beyond_the_devices_pulls_does_not_skip_the_stale_check(env, device, db):
    """A cursor past what the device pulled (a client sending a clock time, say) counts as
    the cursor it did pull."""
    a, b, iid = _on_two_devices(env, device)
    b.update("inspections", iid, notes="from b")
    b.sync()
    a.update("inspections", iid, notes="from a")
    with pytest.raises(SyncFailed) as refused:
        a.push(now_ms())
    assert refused.value.status == 409 and iid in refused.value.body["stale"]["inspections"]
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from b"


def test_a_base_rev_beyond_the_devices_pulls_still_records_the_overwrite(env, device, db):
    a, b, iid = _on_two_devices(env, device)
    a.sync()  # a's copy now carries its server_rev
    a.update("inspections", iid, notes="from a")
    assert "base_rev" in a.db["inspections"][iid]["_changed"]
    a.db["inspections"][iid]["raw"]["base_rev"] = now_ms()  # a clock time, not a rev
    b.update("inspections", iid, notes="from b")
    b.sync()
    a.sync()
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from a"
    conflict = db.execute(select(Conflict).where(Conflict.record_id == iid)).scalar_one()
    assert (conflict.kind, conflict.server_value) == ("concurrent_edit", "from b")


def test_per_field_merge_of_two_devices(env, device, db):
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    a.update("inspections", iid, notes="notes by a")
    b.update("inspections", iid, area="Room 1204")
    a.sync()
    b.sync()
    a.sync()
    for dev in (a, b):
        rec = dev.get("inspections", iid)
        assert rec["notes"] == "notes by a" and rec["area"] == "Room 1204"
    assert db.execute(select(func.count()).select_from(Conflict)).scalar() == 0


def test_structural_garbage_is_422_naming_table_id_column(env, device, client, db):
    phone = device(ANA)
    cursor = phone.pull()
    good = {
        "id": "good1",
        "template_id": env["template"],
        "site_id": env["sites"]["N-HOTEL"],
        "status": "in_progress",
    }
    cases = [
        (
            {"inspections": {"created": [good, {"id": "bad1", "status": 7}]}},
            "inspections.bad1.status",
        ),
        ({"inspections": {"created": [good, {"id": "bad 2"}]}}, "inspections['bad 2'].id"),
        (
            {"inspections": {"created": [good, {"id": "bad3", "score_pct": 1}]}},
            "inspections.bad3.score_pct",
        ),
        ({"sites": {"updated": [{"id": "x"}]}, "inspections": {"created": [good]}}, "sites"),
        ({"gadgets": {"created": []}}, "gadgets"),
    ]
    for changes, key in cases:
        resp = client.post(
            "/api/v1/sync/push",
            headers=phone.headers(),
            json={"changes": changes, "last_pulled_at": cursor},
        )
        assert resp.status_code == 422, resp.get_json()
        assert key in resp.get_json()["errors"], resp.get_json()
    assert db.get(Inspection, "good1") is None  # nothing applied
    resp = client.post("/api/v1/sync/push", headers=phone.headers(), json={"changes": []})
    assert resp.status_code in (400, 422) and "changes" in resp.get_json()["message"]
    resp = client.post(
        "/api/v1/sync/push",
        headers={"Authorization": phone.headers()["Authorization"]},
        json={"changes": {}, "last_pulled_at": cursor},
    )
    assert resp.status_code == 400 and resp.get_json()["reason"] == "missing_device_id"


def test_out_of_scope_record_becomes_a_conflict_and_leaves_the_device(env, device, db):
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env, site="S-HOTEL")  # not Ana's site
    result = ana.sync()
    assert [c["kind"] for c in result["conflicts"]] == ["out_of_scope"]
    assert db.get(Inspection, iid) is None
    conflict = db.execute(select(Conflict)).scalar_one()
    assert conflict.device_value["site_id"] == env["sites"]["S-HOTEL"]
    ana.sync()
    assert ana.get("inspections", iid) is None


def test_hq_cannot_push(env, device, client):
    hq = device(HQ_EMAIL)
    resp = client.post(
        "/api/v1/sync/push", headers=hq.headers(), json={"changes": {}, "last_pulled_at": 0}
    )
    assert resp.status_code == 403


def test_delete_cascades_and_does_not_resurrect(env, device, db):
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    rid = answer(a, iid, "clean", "yes")
    a.sync()
    b.sync()
    assert b.get("responses", rid) is not None
    a.delete("inspections", iid)
    a.delete("responses", rid)
    a.sync()
    b.sync()
    assert b.get("inspections", iid) is None and b.get("responses", rid) is None
    # Create-then-delete offline never reaches the server.
    ghost = new_inspection(a, env)
    a.delete("inspections", ghost)
    a.sync()
    assert db.get(Inspection, ghost) is None
    db.expire_all()
    assert db.get(Response, rid).deleted_at is not None
    a.sync()
    assert a.get("inspections", iid) is None


def test_grant_and_revoke_reach_devices(env, device, api):
    ana = device(ANA)
    ana.sync()
    ben = device(BEN)
    ben.sync()
    iid = new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    grant = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": env["users"][ANA], "site_id": env["sites"]["S-HOTEL"]},
    )
    ana.sync()
    assert ana.get("inspections", iid) is not None
    assert "S-HOTEL" in {s["code"] for s in ana.live("sites").values()}
    api.delete(f"/assignments/{grant.get_json()['id']}", HQ_EMAIL)
    for _ in range(2):  # the deletions wait for the edits made there (test_lost_sites.py)
        ana.sync()
        assert ana.get("inspections", iid) is not None
        elsewhere(device, env)
    ana.sync()
    assert ana.get("inspections", iid) is None
    assert "S-HOTEL" not in {s["code"] for s in ana.live("sites").values()}


def test_a_closed_site_leaves_every_device_that_had_it(env, device, api):
    devices = {email: device(email) for email in (ANA, NORTH, HQ_EMAIL)}
    canteen = env["sites"]["N-CANTEEN"]
    for dev in devices.values():
        dev.sync()
        assert dev.get("sites", canteen) is not None
    assert api.delete(f"/sites/{canteen}", HQ_EMAIL).status_code == 204
    for email, dev in devices.items():
        dev.sync()
        assert dev.get("sites", canteen) is None, email


def test_a_manager_moved_to_another_region_gets_its_sites_and_loses_the_old_ones(
    env, device, api, db
):
    phone = device(NORTH)
    phone.sync()
    north_sites = {s["code"] for s in phone.live("sites").values()}
    assert north_sites == {"N-HOTEL", "N-CANTEEN"}
    ben = device(BEN)
    ben.sync()
    south_inspection = new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    south = db.get(Site, env["sites"]["S-HOTEL"]).region_id
    moved = api.patch(f"/users/{env['users'][NORTH]}", HQ_EMAIL, json={"region_id": south})
    assert moved.status_code == 200
    phone.sync()  # no replacement: the new region arrives whole, the old one is held
    assert phone.get("inspections", south_inspection) is not None
    assert {"N-HOTEL", "N-CANTEEN"} <= {s["code"] for s in phone.live("sites").values()}
    for _ in range(2):  # the old region's deletions wait for the device's edits there
        elsewhere(device, env)
        phone.sync()
    assert {s["code"] for s in phone.live("sites").values()} == {"S-HOTEL", "S-STORE"}
    assert phone.get("inspections", south_inspection) is not None


def test_a_site_moved_to_another_region_moves_between_managers_devices(env, device, api, db):
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env, site="N-HOTEL")
    answer(ana, iid, "clean", "yes")
    ana.sync()
    north, south = device(NORTH), device(SOUTH)
    north.sync()
    south.sync()
    assert north.get("inspections", iid) is not None and south.get("inspections", iid) is None
    south_region = db.get(Site, env["sites"]["S-HOTEL"]).region_id
    hotel = env["sites"]["N-HOTEL"]
    moved = api.patch(f"/sites/{hotel}", HQ_EMAIL, json={"region_id": south_region})
    assert moved.status_code == 200, moved.get_json()
    north.sync()
    south.sync()
    assert south.get("sites", hotel) is not None and south.get("inspections", iid) is not None
    assert north.get("inspections", iid) is not None  # held for the edits made there
    for _ in range(2):
        elsewhere(device, env)
        north.sync()
    assert north.get("sites", hotel) is None and north.get("inspections", iid) is None
    fresh = device(SOUTH, "fresh")
    fresh.sync()
    south.sync()
    assert fresh.snapshot() == south.snapshot()


def test_paging_converges(env, device):
    writer = device(ANA, "writer")
    writer.sync()
    for _ in range(7):
        iid = new_inspection(writer, env)
        answer(writer, iid, "clean", "yes")
    writer.sync()
    small = device(ANA, "small", limit=3)
    small.sync()
    big = device(ANA, "big")
    big.sync()
    assert small.snapshot() == big.snapshot()
    assert len(small.live("inspections")) == 7


def test_server_owned_columns_are_ignored_and_the_device_converges(env, device, db):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env, score=99, passed=True, inspector_id="someone-else")
    phone.sync()
    insp = db.get(Inspection, iid)
    assert insp.inspector_id == env["users"][ANA] and insp.score != 99
    phone.update("inspections", iid, score=1000, review_state="approved")
    phone.sync()
    phone.sync()
    rec = phone.get("inspections", iid)
    assert rec["score"] != 1000 and rec["review_state"] is None


def _without_base_rev(dev, table: str, rid: str) -> None:
    """The edit as a client that sends no base_rev pushes it."""
    rec = dev.db[table][rid]
    rec["raw"].pop("base_rev", None)
    rec["_changed"].discard("base_rev")


@pytest.mark.parametrize("first_cursor", [None, 0])
def test_an_edit_after_a_first_pull_without_base_rev_is_no_concurrent_edit(
    env, device, db, first_cursor
):
    # A device's first pull (from nothing: no cursor, or 0) showed it every record as of that
    # pull's end: an edit it pushes next without a base_rev is based on that, not on "before
    # everything".
    a = device(ANA, "a")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    a.update("inspections", iid, notes="by a")
    a.sync()
    b = device(ANA, "b")
    b.last_pulled_at = first_cursor
    cursor = b.pull()  # the first pull, then straight to the push, as a hand-made client may
    b.update("inspections", iid, notes="by b")
    _without_base_rev(b, "inspections", iid)
    assert b.push(cursor)["conflicts"] == []
    db.expire_all()
    assert db.get(Inspection, iid).notes == "by b"
    assert db.execute(select(func.count()).select_from(Conflict)).scalar() == 0


def test_an_edit_made_before_a_paged_pull_is_judged_against_where_the_pull_started(env, device, db):
    # Pages move the cursor, not what the device knew when it edited: a's change to the notes
    # came after b's copy, so b's overwrite is kept as a conflict, as with one page.
    a = device(ANA, "a")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b = device(ANA, "b", limit=2)
    b.sync()
    a.update("inspections", iid, notes="by a")
    for _ in range(6):
        new_inspection(a, env)
    a.sync()
    b.update("inspections", iid, notes="by b")
    _without_base_rev(b, "inspections", iid)
    b.sync()  # four pages, then the push
    db.expire_all()
    assert db.get(Inspection, iid).notes == "by b"
    conflict = db.execute(select(Conflict).where(Conflict.record_id == iid)).scalar_one()
    assert conflict.kind == "concurrent_edit" and conflict.server_value == "by a"
