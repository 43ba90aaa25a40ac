"""A site leaves a device (access revoked, or the site closed) one sync after the device learns
of it: WatermelonDB pulls before it pushes and destroys deleted records even with local changes,
so the edits made there offline reach the server first, as conflicts that keep them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from store.models import Conflict, DeviceState, Response, Site
from tests.sync.device import SyncFailed
from tests.sync_env import ANA, BEN, HQ_EMAIL, NORTH, answer, elsewhere, new_inspection


def _grant(api, env, site: str = "S-HOTEL") -> str:
    """Give Ana a second region's site; returns the assignment's id."""
    made = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": env["users"][ANA], "site_id": env["sites"][site]},
    )
    assert made.status_code == 201, made.get_json()
    return made.get_json()["id"]


def _edited_offline(env, device, api) -> tuple[Any, str, str]:
    """Ana's phone holds an inspection at S-HOTEL and edits it offline; returns (phone,
    inspection, the answer added offline) with the assignment already revoked on the server."""
    assignment = _grant(api, env)
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, site="S-HOTEL")
    phone.sync()
    phone.update("inspections", iid, notes="mould behind the minibar")
    rid = answer(phone, iid, "clean", "no")
    assert api.delete(f"/assignments/{assignment}", HQ_EMAIL).status_code == 204
    return phone, iid, rid


def _kept(db, record_id: str) -> list[Conflict]:
    db.expire_all()
    return list(db.scalars(select(Conflict).where(Conflict.record_id == record_id)))


def test_edits_made_offline_at_a_revoked_site_reach_the_server_as_conflicts(env, device, api, db):
    phone, iid, rid = _edited_offline(env, device, api)
    result = phone.sync()
    # The pull that learned of the revoke left the records, so the push sent the edits.
    assert result is not None
    refused = {(c["table"], c["id"], c["kind"]) for c in result["conflicts"]}
    assert ("inspections", iid, "out_of_scope") in refused
    assert ("responses", rid, "out_of_scope") in refused
    notes = [c.device_value for c in _kept(db, iid) if c.kind == "out_of_scope"]
    assert notes and notes[0]["notes"] == "mould behind the minibar"
    assert _kept(db, rid)[0].device_value["value"] == '"no"'
    # The next sync takes the site away.
    phone.sync()
    assert phone.get("inspections", iid) is None and phone.get("responses", rid) is None
    assert "S-HOTEL" not in {s["code"] for s in phone.live("sites").values()}
    assert phone.get("inspections", iid) is None
    # The deletions are sent again until the device shows it applied them (a sync from the
    # cursor they came with); then the device owes nothing.
    phone.sync()
    db.expire_all()
    assert db.get(DeviceState, (env["users"][ANA], phone.device_id)).held is None


def test_a_device_with_nothing_to_push_loses_the_site_one_sync_later(env, device, api):
    assignment = _grant(api, env)
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, site="S-HOTEL")
    phone.sync()
    api.delete(f"/assignments/{assignment}", HQ_EMAIL)
    for _ in range(2):  # no push tells the server its edits are in: one more sync does
        assert phone.sync() is None
        assert phone.get("inspections", iid) is not None
        elsewhere(device, env)  # a sync is known applied by the new cursor it handed out
    phone.sync()
    assert phone.get("inspections", iid) is None
    assert "S-HOTEL" not in {s["code"] for s in phone.live("sites").values()}


def test_in_a_quiet_deployment_the_deletions_wait_for_a_new_cursor(env, device, api):
    """With nothing changed anywhere, a pull hands out the cursor it was asked from: whether
    its answer arrived cannot be told, so the hold does not move on."""
    assignment = _grant(api, env)
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, site="S-HOTEL")
    phone.sync()
    api.delete(f"/assignments/{assignment}", HQ_EMAIL)
    for _ in range(4):
        phone.sync()
    assert phone.get("inspections", iid) is not None


def test_every_page_of_the_holding_sync_holds_and_so_does_a_pull_again_from_before_it(
    env, device, api
):
    phone, iid, _ = _edited_offline(env, device, api)
    writer = device(ANA, "writer")
    writer.sync()
    for _ in range(4):  # more changes since the revoke than one page holds
        new_inspection(writer, env)
    writer.sync()
    phone.limit = 2
    phone.pull()  # all its pages; the device does not save this pull (the app crashed)
    assert phone.get("inspections", iid) is not None
    result = phone.sync()  # a pull again from the same cursor, then the push
    assert phone.get("inspections", iid) is not None
    assert ("inspections", iid) in {(c["table"], c["id"]) for c in result["conflicts"]}
    phone.sync()
    assert phone.get("inspections", iid) is None


def test_a_site_given_back_before_the_next_sync_stays(env, device, api):
    phone, iid, _ = _edited_offline(env, device, api)
    phone.sync()
    _grant(api, env)
    phone.sync()
    phone.sync()
    assert phone.get("inspections", iid) is not None
    assert "S-HOTEL" in {s["code"] for s in phone.live("sites").values()}


def test_edits_made_offline_at_a_closed_site_reach_the_server_as_conflicts(env, device, api, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, site="N-CANTEEN")
    phone.sync()
    phone.update("inspections", iid, notes="grease trap overflowing")
    assert api.delete(f"/sites/{env['sites']['N-CANTEEN']}", HQ_EMAIL).status_code == 204
    result = phone.sync()
    assert result is not None
    assert [(c["table"], c["id"]) for c in result["conflicts"]] == [("inspections", iid)]
    assert _kept(db, iid)[0].device_value["notes"] == "grease trap overflowing"
    assert phone.get("sites", env["sites"]["N-CANTEEN"]) is None
    phone.sync()
    assert phone.get("inspections", iid) is None


def test_a_push_lost_after_the_holding_pull_goes_on_the_next_sync(env, device, api, db):
    phone, iid, rid = _edited_offline(env, device, api)
    # The sync's pull lands (WatermelonDB saves its cursor), then the signal goes: no push.
    phone.last_pulled_at = phone.pull()
    assert phone.get("inspections", iid) is not None and phone.dirty()
    result = phone.sync()  # the next sync still holds the site: its push goes through
    assert phone.get("inspections", iid) is not None
    assert {c["id"] for c in result["conflicts"]} >= {iid, rid}
    assert _kept(db, iid)[0].device_value["notes"] == "mould behind the minibar"
    phone.sync()
    assert phone.get("inspections", iid) is None


def _lost_pull(phone) -> dict:
    """A pull whose answer never reaches the phone (a timeout): nothing applied, cursor kept."""
    params = {} if phone.last_pulled_at is None else {"last_pulled_at": phone.last_pulled_at}
    resp = phone.client.get("/api/v1/sync/pull", query_string=params, headers=phone.headers())
    assert resp.status_code == 200
    return resp.get_json()


def test_deletions_whose_answer_was_lost_are_sent_again(env, device, api):
    phone, _iid, _rid = _edited_offline(env, device, api)
    phone.sync()  # holds the site; the push sends the edits
    hotel = env["sites"]["S-HOTEL"]
    assert hotel in _lost_pull(phone)["changes"]["sites"]["deleted"]
    phone.sync()  # WatermelonDB pulls again from the same cursor
    assert phone.get("sites", hotel) is None


def test_deletions_on_page_one_of_a_pull_broken_on_page_two_are_sent_again(env, device, api):
    phone, _iid, _rid = _edited_offline(env, device, api)
    phone.sync()
    writer = device(ANA, "writer")
    writer.sync()
    for _ in range(4):  # enough for the next pull to take several pages
        new_inspection(writer, env)
    writer.sync()
    params = {"last_pulled_at": phone.last_pulled_at, "limit": 2}
    first = phone.client.get("/api/v1/sync/pull", query_string=params, headers=phone.headers())
    assert first.get_json()["has_more"]  # page 1, with the deletions, arrives; page 2 fails
    phone.limit = 2
    phone.sync()  # the pull again, from the saved cursor
    assert phone.get("sites", env["sites"]["S-HOTEL"]) is None


def test_a_record_refused_at_a_site_lost_before_the_next_pull_still_leaves(env, device, api):
    assignment = _grant(api, env)
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, site="S-HOTEL")
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    phone.sync()
    phone.sync()
    late = answer(phone, iid, "remark", "one more thing")  # the inspection is locked
    assert [(c["id"], c["kind"]) for c in phone.sync()["conflicts"]] == [(late, "locked")]
    # The server never stored it; before the pull that drops it, the site is taken away.
    assert api.delete(f"/assignments/{assignment}", HQ_EMAIL).status_code == 204
    for _ in range(3):
        phone.sync()
        elsewhere(device, env)
    assert phone.get("inspections", iid) is None
    assert phone.get("responses", late) is None


def test_a_lost_push_then_a_lost_pull_do_not_count_as_a_sync_gone_by(env, device, api, db):
    phone, iid, _rid = _edited_offline(env, device, api)
    phone.last_pulled_at = phone.pull()  # the holding pull lands; the push is lost
    _lost_pull(phone)  # the next pull's answer is lost
    result = phone.sync()  # again: the site stays, and the push sends the edits
    assert phone.get("inspections", iid) is not None
    assert iid in {c["id"] for c in result["conflicts"]}
    assert _kept(db, iid)[0].device_value["notes"] == "mould behind the minibar"


# --- found by review: refused pushes, records created or deleted around a hold ---------------


def _notes_kept(db, iid: str) -> list[str]:
    return [c.device_value.get("notes") for c in _kept(db, iid) if c.device_value]


def test_refused_pushes_do_not_count_as_syncs_without_a_push_422(env, device, api, db):
    phone, iid, _rid = _edited_offline(env, device, api)
    # Something on the phone the server refuses whole (all-or-nothing push: 422).
    bad = {"site_id": env["sites"]["N-HOTEL"], "status": "not-a-status", "started_at": 1}
    phone.create("inspections", template_id=env["template"], area="x", **bad)
    for _ in range(2):
        with pytest.raises(SyncFailed) as failed:
            phone.sync()  # the pull is applied and its cursor saved; the push is refused
        assert failed.value.status == 422
        elsewhere(device, env)
    with pytest.raises(SyncFailed):
        phone.sync()
    # The edit never reached the server ...
    assert "mould behind the minibar" not in _notes_kept(db, iid)
    # ... so the device must still hold it; it was destroyed by the pulled deletions.
    assert phone.get("inspections", iid) is not None


def _sync_racing(phone, rival, record: str) -> None:
    """phone's sync, with a colleague's change to `record` landing between its pull and push."""
    phone.last_pulled_at = cursor = phone.pull()
    rival.sync()
    rival.update("inspections", record, area=f"area {rival.pushes}")
    rival.sync()
    with pytest.raises(SyncFailed) as failed:
        phone.push(cursor)
    assert failed.value.status == 409  # stale_push


def test_refused_pushes_do_not_count_as_syncs_without_a_push_409(env, device, api, db):
    tab = device(ANA, "tab")
    tab.sync()
    shared = new_inspection(tab, env)  # at N-HOTEL: stays in Ana's scope
    tab.sync()
    phone, iid, _rid = _edited_offline(env, device, api)  # phone has `shared` too
    phone.update("inspections", shared, notes="phone's note")
    _sync_racing(phone, tab, shared)  # the holding pull; its push is stale (409)
    _sync_racing(phone, tab, shared)  # the next sync's push is stale as well
    phone.sync()  # the pull still holds the site; its push goes through, edits and all
    assert "mould behind the minibar" in _notes_kept(db, iid)
    assert phone.get("inspections", iid) is not None


def test_a_record_created_there_before_the_releasing_pull_leaves_once_refused(env, device, api):
    phone, iid, _rid = _edited_offline(env, device, api)
    phone.sync()  # the holding pull; the push sends the edits (hold ready)
    elsewhere(device, env)
    # Offline again before the next sync: a new answer in the held inspection.
    late = answer(phone, iid, "remark", "one more thing")
    result = phone.sync()  # the pull releases the site (its known records go); the push
    assert phone.get("inspections", iid) is None  # sends the new answer: refused
    assert late in {c["id"] for c in result["conflicts"]}
    for _ in range(3):
        phone.sync()
        elsewhere(device, env)
    # The server never stored it and the device may not see its site: it must leave.
    assert phone.get("responses", late) is None


def test_a_record_deleted_while_held_leaves_when_the_site_is_given_back(env, device, api):
    assignment = _grant(api, env)
    ben = device(BEN, "ben")  # Ben works at S-HOTEL too
    ben.sync()
    bens = new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    phone = device(ANA, "phone")
    phone.sync()
    assert phone.get("inspections", bens) is not None
    assert api.delete(f"/assignments/{assignment}", HQ_EMAIL).status_code == 204
    phone.sync()  # the holding pull: the site's records stay for now
    ben.delete("inspections", bens)
    assert ben.sync()["conflicts"] == []  # deleted on the server while Ana's phone holds the site
    phone.sync()  # the tombstone passes by, out of Ana's scope
    _grant(api, env)  # the site given back before its deletions went
    for _ in range(3):
        phone.sync()
        elsewhere(device, env)
    assert "S-HOTEL" in {s["code"] for s in phone.live("sites").values()}
    assert phone.get("inspections", bens) is None


def test_a_record_refused_while_held_leaves_when_the_site_is_given_back(env, device, api, db):
    phone, iid, rid = _edited_offline(env, device, api)  # rid: an answer created offline
    result = phone.sync()  # holding pull; the push is refused at the lost site
    assert ("responses", rid, "out_of_scope") in {
        (c["table"], c["id"], c["kind"]) for c in result["conflicts"]
    }
    _grant(api, env)  # given back before the deletions went
    for _ in range(3):
        phone.sync()
        elsewhere(device, env)
    assert phone.get("inspections", iid) is not None  # the site is back
    db.expire_all()
    assert db.get(Response, rid) is None  # the server never stored the answer ...
    assert phone.get("responses", rid) is None  # ... so the device drops it


# --- regional managers: sites joining or leaving the region --------------------------------


def _manager_editing_the_canteen(env, device) -> tuple[Any, str]:
    """North's manager holds an inspection at N-CANTEEN and edits it offline."""
    writer = device(ANA, "writer")
    writer.sync()
    iid = new_inspection(writer, env, site="N-CANTEEN")
    writer.sync()
    manager = device(NORTH, "manager")
    manager.sync()
    assert manager.get("inspections", iid) is not None
    manager.update("inspections", iid, notes="seen by the manager offline")
    return manager, iid


def _kept_or_still_there(db, manager, iid: str) -> bool:
    """The manager's offline edit is on the server (a conflict) or still on the device."""
    notes = _notes_kept(db, iid)
    return "seen by the manager offline" in notes or manager.get("inspections", iid) is not None


def _move(api, env, db, code: str, into: str) -> None:
    """HQ moves a site into the region of another."""
    region = db.get(Site, env["sites"][into]).region_id
    moved = api.patch(f"/sites/{env['sites'][code]}", HQ_EMAIL, json={"region_id": region})
    assert moved.status_code == 200, moved.get_json()


def _open_a_north_site(api, env, db) -> None:
    """HQ opens a new site in North's region."""
    region = db.get(Site, env["sites"]["N-HOTEL"]).region_id
    made = api.post("/sites", HQ_EMAIL, json={"region_id": region, "name": "New", "code": "N-NEW"})
    assert made.status_code == 201, made.get_json()


def _south_run(env, device) -> str:
    """Ben's inspection at S-HOTEL."""
    ben = device(BEN, "ben")
    ben.sync()
    run = new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    return run


def test_a_managers_edits_at_a_site_moved_to_another_region_are_kept(env, device, api, db):
    manager, iid = _manager_editing_the_canteen(env, device)
    _move(api, env, db, "N-CANTEEN", into="S-HOTEL")
    manager.sync()
    assert _kept_or_still_there(db, manager, iid)


def test_a_new_site_in_the_region_does_not_replace_a_managers_data(env, device, api, db):
    manager, iid = _manager_editing_the_canteen(env, device)
    assert api.delete(f"/sites/{env['sites']['N-CANTEEN']}", HQ_EMAIL).status_code == 204
    _open_a_north_site(api, env, db)
    manager.sync()  # closure and new site in one pull: no replacement
    assert _kept_or_still_there(db, manager, iid)


def test_a_new_site_after_the_holding_pull_keeps_the_hold(env, device, api, db):
    manager, iid = _manager_editing_the_canteen(env, device)
    assert api.delete(f"/sites/{env['sites']['N-CANTEEN']}", HQ_EMAIL).status_code == 204
    manager.last_pulled_at = manager.pull()  # the holding pull lands, its push is lost
    assert manager.get("inspections", iid) is not None
    _open_a_north_site(api, env, db)
    manager.sync()  # the new site is sent; the hold stands
    assert _kept_or_still_there(db, manager, iid)


def test_a_site_joining_the_region_arrives_though_the_pull_that_sent_it_was_lost(
    env, device, api, db
):
    south_run = _south_run(env, device)
    manager = device(NORTH, "manager")
    manager.sync()
    _move(api, env, db, "S-HOTEL", into="N-HOTEL")
    sent = _lost_pull(manager)  # the site's records were in it; the answer never arrived
    assert south_run in {r["id"] for r in sent["changes"]["inspections"]["updated"]}
    manager.sync()
    assert manager.get("inspections", south_run) is not None
    fresh = device(NORTH, "fresh")
    fresh.sync()
    manager.sync()
    assert fresh.snapshot() == manager.snapshot()


def test_a_site_joining_the_region_arrives_though_the_paged_pull_broke_on_page_two(
    env, device, api, db
):
    south_run = _south_run(env, device)
    manager = device(NORTH, "manager", limit=1)
    manager.sync()
    _move(api, env, db, "S-HOTEL", into="N-HOTEL")
    elsewhere(device, env)  # more than one page of changes
    params = {"last_pulled_at": manager.last_pulled_at, "limit": 1}
    first = manager.client.get("/api/v1/sync/pull", query_string=params, headers=manager.headers())
    assert first.get_json()["has_more"]  # page 1 arrives; page 2 fails, nothing is applied
    manager.sync()  # the pull again, from the saved cursor
    assert manager.get("inspections", south_run) is not None
