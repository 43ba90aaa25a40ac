"""Reviewer findings on completing inspections and repeating action moves: a completion
records when it happened, an inspection with no known template version cannot be completed (so
it never reaches the review queue unscored), and a repeated action move changes nothing."""

from __future__ import annotations

from store.models import Conflict, Inspection
from tests.conftest import ANA, NORTH
from tests.media.conftest import jpeg
from tests.sync_env import answer, new_inspection, now_ms, photo_record, upload_photo


def _answered(phone, env) -> str:
    """An in-progress inspection with every required item answered, synced."""
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    assert phone.sync()["conflicts"] == []
    return iid


def test_completing_over_rest_records_when(env, device, api, db):
    phone = device(ANA)
    iid = _answered(phone, env)
    before = now_ms()
    resp = api.post(f"/inspections/{iid}/complete", ANA)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "completed"
    assert resp.get_json()["completed_at"] is not None  # shown as a time (ISO 8601)
    db.expire_all()
    stored = db.get(Inspection, iid).completed_at
    assert before <= stored <= now_ms()
    phone.sync()
    assert phone.get("inspections", iid)["completed_at"] == stored


def test_a_device_completion_without_a_time_gets_the_servers(env, device, db):
    phone = device(ANA)
    iid = _answered(phone, env)
    before = now_ms()
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert before <= db.get(Inspection, iid).completed_at <= now_ms()
    phone.sync()
    assert phone.get("inspections", iid)["completed_at"] == db.get(Inspection, iid).completed_at


def test_a_device_completion_keeps_the_devices_time(env, device, db):
    phone = device(ANA)
    iid = _answered(phone, env)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Inspection, iid).completed_at == 1_795_000_000_000


def test_an_inspection_of_an_unknown_template_version_cannot_be_completed(env, device, api, db):
    phone = device(ANA)
    phone.sync()
    iid = phone.create(
        "inspections",
        template_id="no-such-version",
        site_id=env["sites"]["N-HOTEL"],
        status="completed",
        started_at=now_ms(),
    )
    result = phone.sync()
    [conflict] = result["conflicts"]
    assert conflict["kind"] == "invalid_value" and conflict["column"] == "template_id"
    assert "cannot be completed" in conflict["detail"]
    db.expire_all()
    stored = db.get(Inspection, iid)
    assert stored.status == "in_progress" and stored.completed_received_at is None
    assert stored.has_conflicts is True
    # Nothing unscored reaches the reviewers, and nothing lets it through later.
    queue = api.get("/inspections", NORTH).get_json()
    assert iid not in [i["id"] for i in queue]
    assert api.post(f"/inspections/{iid}/approve", NORTH).status_code == 422
    refused = api.post(f"/inspections/{iid}/complete", ANA)
    assert refused.status_code == 422
    body = refused.get_json()
    assert body["reason"] == "incomplete" and "unknown template version" in body["message"]
    assert "template_id" in body["errors"]
    db.expire_all()
    assert db.get(Inspection, iid).status == "in_progress"
    phone.sync()
    assert phone.get("inspections", iid)["status"] == "in_progress"  # the device is told
    assert db.query(Conflict).filter_by(record_id=iid).count() == 1  # the REST refusal kept none


def test_repeating_an_action_move_changes_nothing(completed, api):
    phone, iid = completed
    actions = api.get(f"/actions?inspection_id={iid}", ANA).get_json()
    aid = next(a for a in actions if a["priority"] == "high")["id"]
    data = jpeg(40, 30)
    att = photo_record(phone, None, None, data, action_id=aid)
    phone.sync()
    upload_photo(phone, att, data)
    path = f"/actions/{aid}/transition"
    assert api.post(path, ANA, json={"status": "resolved", "note": "Replaced"}).status_code == 200
    verified = api.post(path, NORTH, json={"status": "verified"}).get_json()
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    # The inspector repeats the manager's move, then their own: both answered as they stand.
    again = api.post(path, ANA, json={"status": "verified", "note": "self verified"})
    assert again.status_code == 200
    assert again.get_json() == verified
    resolved_again = api.post(path, ANA, json={"status": "resolved", "note": "Other"})
    assert resolved_again.status_code == 422  # verified -> resolved is no move
    assert api.get(f"/actions/{aid}/audit", NORTH).get_json() == trail
    assert api.get(f"/actions/{aid}", NORTH).get_json() == verified
