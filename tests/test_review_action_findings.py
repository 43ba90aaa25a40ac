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
