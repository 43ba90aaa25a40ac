"""A site leaves a device (access revoked, or the site closed) one sync after the device learns
of it: WatermelonDB pulls before it pushes and destroys deleted records even with local changes,
so the edits made there offline reach the server first, as conflicts that keep them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from store.models import Conflict, DeviceState
from tests.sync_env import ANA, HQ_EMAIL, answer, new_inspection


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
    db.expire_all()
    state = db.get(DeviceState, (env["users"][ANA], phone.device_id))
    assert state.held is None


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
    phone.sync()
    assert phone.get("inspections", iid) is None
    assert "S-HOTEL" not in {s["code"] for s in phone.live("sites").values()}


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
