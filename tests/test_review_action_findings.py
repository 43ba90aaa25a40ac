"""Review findings on the inspection lifecycle over REST and corrective actions: what a
verification looks at, what a REST completion records, and what the audit trail keeps."""

from __future__ import annotations

import hashlib

from tests.conftest import ANA, NORTH
from tests.media.conftest import png
from tests.sync_env import upload_photo


def _high(api, iid):
    """The critical item's action of a completed inspection."""
    actions = api.get(f"/actions?inspection_id={iid}", ANA).get_json()
    return next(a for a in actions if a["priority"] == "high")["id"]


def _signature_only(phone, aid):
    """The action's only evidence is a signature (a PNG) whose bytes are uploaded."""
    data = png(50, 50)
    att = phone.create(
        "attachments",
        kind="signature",
        sha256=hashlib.sha256(data).hexdigest(),
        mime="image/png",
        byte_size=len(data),
        action_id=aid,
    )
    assert phone.sync()["conflicts"] == []
    upload_photo(phone, att, data, mime="image/png")
    return att


def test_a_signature_alone_is_no_photo_of_the_fix_to_verify_over_rest(completed, api):
    """Verifying needs a photo of the fix uploaded: a signature shows no fix."""
    phone, iid = completed
    aid = _high(api, iid)
    _signature_only(phone, aid)
    resolved = api.post(
        f"/actions/{aid}/transition", ANA, json={"status": "resolved", "note": "ok"}
    )
    assert resolved.status_code == 200
    refused = api.post(f"/actions/{aid}/transition", NORTH, json={"status": "verified"})
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["reason"] == "evidence_not_uploaded"
    assert api.get(f"/actions/{aid}", NORTH).get_json()["status"] == "resolved"


def test_a_signature_alone_is_no_photo_of_the_fix_to_verify_from_a_device(completed, api, device):
    """The same rule for a manager's device."""
    phone, iid = completed
    aid = _high(api, iid)
    _signature_only(phone, aid)
    phone.update("actions", aid, status="resolved", resolution_note="Thermostat replaced")
    assert phone.sync()["conflicts"] == []
    manager = device(NORTH, "tablet")
    manager.sync()
    manager.update("actions", aid, status="verified")
    refused = manager.sync()["conflicts"]
    assert [(c["kind"], c["id"]) for c in refused] == [("lifecycle", aid)]
    assert api.get(f"/actions/{aid}", NORTH).get_json()["status"] == "resolved"


def test_a_rest_completion_after_a_return_records_when_it_was_completed_again(completed, api):
    """Over REST the completion time is the server's: completing a returned inspection again
    is now, not the first completion's time (the device's, days before)."""
    phone, iid = completed
    first = api.get(f"/inspections/{iid}", NORTH).get_json()["inspection"]["completed_at"]
    assert first == "2026-11-18T11:06:40Z"  # the device's time (completed fixture)
    back = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Recheck the fridge"})
    assert back.status_code == 200
    phone.sync()
    done = api.post(f"/inspections/{iid}/complete", ANA)
    assert done.status_code == 200, done.get_json()
    again = done.get_json()
    assert again["completed_at"] != first
    assert again["completed_at"][:16] == again["received_at"].replace("+00:00", "Z")[:16]
    trail = api.get(f"/inspections/{iid}/audit", NORTH).get_json()
    moved = [e for e in trail if e["action"] == "transition" and e["entity"] == "inspection"]
    assert moved[-1]["changes"]["completed_at"] != 1_795_000_000_000


def test_an_action_raised_over_rest_is_audited_with_what_it_was_raised_as(env, api):
    """Its creation keeps status, priority, due time, assignee and source, as a device's
    does: the trail said only its title."""
    ana = env["users"][ANA]
    body = {
        "site_id": env["sites"]["N-CANTEEN"],
        "title": "Broken tile",
        "priority": "high",
        "assignee_id": ana,
    }
    created = api.post("/actions", ANA, json=body)
    assert created.status_code == 201, created.get_json()
    action = created.get_json()
    trail = api.get(f"/actions/{action['id']}/audit", NORTH).get_json()
    assert [e["action"] for e in trail] == ["create"]
    changes = trail[0]["changes"]
    assert changes["title"] == [None, "Broken tile"]
    assert changes["status"] == [None, "open"]
    assert changes["priority"] == [None, "high"]
    assert changes["assignee_id"] == [None, ana]
    assert changes["due_at"][1] is not None
    assert changes["source"] == "manual"
