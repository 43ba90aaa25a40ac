"""Corrective actions and their fix evidence cannot be deleted by a device once the rules
depend on them (domain.md: verifying is for managers; one action per failed item)."""

from __future__ import annotations

from store.models import Action, Attachment, Inspection
from tests.sync_env import ANA, NORTH, action_with_photo


def test_a_verified_action_and_its_fix_photo_survive_a_device_deletion(env, device, api, db):
    aid, att = action_with_photo(env, device)
    path = f"/actions/{aid}/transition"
    assert (
        api.post(path, ANA, json={"status": "resolved", "note": "Tap replaced"}).status_code == 200
    )
    assert api.post(path, NORTH, json={"status": "verified", "note": "Checked"}).status_code == 200
    tab = device(ANA, "tab")
    tab.sync()
    tab.delete("actions", aid)
    tab.sync()
    db.expire_all()
    assert db.get(Action, aid).deleted_at is None
    assert db.get(Attachment, att).deleted_at is None  # the verified fix's evidence


def test_failed_items_keep_their_corrective_actions_through_rework(env, device, api, db, completed):
    phone, iid = completed  # two failed items, so two actions
    actions = db.query(Action).filter_by(inspection_id=iid).all()
    assert len(actions) == 2
    back = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Redo the fridge"})
    assert back.status_code == 200
    phone.sync()
    phone.update("inspections", iid, status="in_progress")
    for action in actions:
        phone.delete("actions", action.id)
    phone.sync()
    phone.update("inspections", iid, status="completed")  # the same failed answers
    phone.sync()
    db.expire_all()
    assert db.get(Action, actions[0].id).status == "open"
    live = db.query(Action).filter_by(inspection_id=iid, deleted_at=None).count()
    assert live == 2, "two failed items, no live corrective action"


def test_an_inspector_still_deletes_an_open_action_raised_by_hand(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    aid = phone.create("actions", site_id=env["sites"]["N-HOTEL"], title="Typo", status="open")
    phone.sync()
    phone.delete("actions", aid)
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).deleted_at is not None


def test_deleting_a_returned_inspection_takes_its_actions_with_it(env, device, api, db, completed):
    phone, iid = completed  # two failed items: two server-opened actions
    back = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Start again"})
    assert back.status_code == 200
    phone.sync()
    phone.delete("inspections", iid)
    result = phone.sync()
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None  # the deletion stands...
    live = db.query(Action).filter_by(inspection_id=iid, deleted_at=None).count()
    assert (live, result["conflicts"]) == (0, [])  # ...and leaves no action behind
