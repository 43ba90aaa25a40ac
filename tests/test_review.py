"""Review and corrective actions driven by a syncing device, and every role rule."""

from __future__ import annotations

import csv
import io

from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH
from tests.media.conftest import jpeg
from tests.sync_env import answer, new_inspection, photo_record, upload_photo


def test_completion_scores_and_opens_actions(completed, api):
    phone, iid = completed
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    insp = view["inspection"]
    assert insp["status"] == "completed" and insp["review_state"] == "pending"
    assert insp["passed"] is False and insp["critical_failed"] is True
    assert insp["score"] == 0 and insp["max_score"] == 2  # clean (w1) and fridge (w1) both 0
    assert [i["key"] for i in view["items"][:2]] == ["fridge", "clean"]  # failed first
    actions = sorted(view["actions"], key=lambda a: a["priority"])
    assert [a["priority"] for a in actions] == ["high", "medium"]
    received = insp["received_at"]
    assert received
    assert view["missing_evidence"][0]["item_key"] == "clean"  # photo on fail, none yet
    # Completing again (a retried push) never opens the actions twice.
    phone.sync()
    assert len(api.get(f"/inspections/{iid}", NORTH).get_json()["actions"]) == 2


def test_queue_is_scoped_and_filterable(completed, api):
    _, iid = completed
    assert [i["id"] for i in api.get("/inspections", NORTH).get_json()] == [iid]
    assert api.get("/inspections", SOUTH).get_json() == []
    assert [i["id"] for i in api.get("/inspections", HQ_EMAIL).get_json()] == [iid]
    assert api.get("/inspections?critical_failed=false", NORTH).get_json() == []
    assert len(api.get("/inspections?passed=false&media_complete=false", NORTH).get_json()) == 1
    assert api.get("/inspections", ANA).status_code == 403


def test_return_pull_fix_complete_approve_then_stale_edit_is_a_conflict(completed, api, device, db):
    phone, iid = completed
    stale = device(ANA, "stale")
    stale.sync()
    assert api.post(f"/inspections/{iid}/return", NORTH, json={}).status_code == 422
    resp = api.post(
        f"/inspections/{iid}/return",
        NORTH,
        json={"comment": "Fridge too warm: recheck after repair"},
    )
    assert resp.status_code == 200 and resp.get_json()["status"] == "returned"
    phone.sync()
    rec = phone.get("inspections", iid)
    assert rec["review_state"] == "returned" and rec["review_comment"].startswith("Fridge")
    fridge = next(r for r in phone.live("responses").values() if r["item_key"] == "fridge")
    phone.update("responses", fridge["id"], value="4")
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    again = api.get(f"/inspections/{iid}", NORTH).get_json()["inspection"]
    assert again["status"] == "completed" and again["critical_failed"] is False
    assert api.post(f"/inspections/{iid}/approve", NORTH, json={}).status_code == 200
    # A device that never saw any of this edits the inspection: refused, kept as a conflict.
    stale.update("inspections", iid, notes="late edit")
    result = stale.sync()
    assert [c["kind"] for c in result["conflicts"]] == ["locked"]
    stale.sync()
    assert stale.get("inspections", iid)["status"] == "approved"
    assert stale.get("inspections", iid)["notes"] is None
    conflicts = api.get(f"/conflicts?inspection_id={iid}", NORTH).get_json()
    assert conflicts[0]["kind"] == "locked"
    assert conflicts[0]["device_value"]["notes"] == "late edit"
    trail = api.get(f"/inspections/{iid}/audit", NORTH).get_json()
    actions = [e["action"] for e in trail]
    assert "return" in actions and "approve" in actions and "transition" in actions


def test_review_role_rules(completed, api):
    _, iid = completed
    assert api.post(f"/inspections/{iid}/approve", ANA, json={}).status_code == 403
    # Outside scope (domain.md): a write is forbidden, a read finds nothing.
    assert api.post(f"/inspections/{iid}/approve", SOUTH, json={}).status_code == 403
    assert api.get(f"/inspections/{iid}", SOUTH).status_code == 404
    assert api.get(f"/inspections/{iid}", BEN).status_code == 200  # Ben has N-HOTEL
    assert api.post(f"/inspections/{iid}/archive", NORTH).status_code == 403  # HQ only
    assert api.post(f"/inspections/{iid}/approve", HQ_EMAIL, json={}).status_code == 200
    # Approving again is a harmless retry; returning an approved inspection is refused.
    assert api.post(f"/inspections/{iid}/approve", NORTH, json={}).status_code == 200
    assert api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "x"}).status_code == 422
    trail = api.get(f"/inspections/{iid}/audit", NORTH).get_json()
    assert [e["action"] for e in trail].count("approve") == 1


def test_action_flow_needs_note_and_evidence_and_a_manager_to_verify(completed, api, client):
    phone, iid = completed
    actions = api.get(f"/actions?inspection_id={iid}", ANA).get_json()
    action = next(a for a in actions if a["priority"] == "high")
    aid = action["id"]
    path = f"/actions/{aid}/transition"
    assert api.post(path, ANA, json={"status": "in_progress"}).status_code == 200
    refused = api.post(path, ANA, json={"status": "resolved", "note": "fixed"})
    assert refused.status_code == 422 and refused.get_json()["reason"] == "evidence_required"
    data = jpeg(400, 300)
    att = photo_record(phone, None, None, data, action_id=aid)
    phone.sync()
    assert api.post(path, ANA, json={"status": "resolved"}).get_json()["reason"] == (
        "note_required"
    )
    ok = api.post(path, ANA, json={"status": "resolved", "note": "Thermostat replaced"})
    assert ok.status_code == 200 and ok.get_json()["status"] == "resolved"
    assert ok.get_json()["evidence"][0]["id"] == att
    assert api.post(path, ANA, json={"status": "verified"}).status_code == 403
    assert api.post(path, SOUTH, json={"status": "verified"}).status_code == 403
    # The photo's record is there, its bytes are not: nothing to verify the fix by yet.
    early = api.post(path, NORTH, json={"status": "verified"})
    assert early.status_code == 422 and early.get_json()["reason"] == "evidence_not_uploaded"
    upload_photo(phone, att, data)
    verified = api.post(path, NORTH, json={"status": "verified"}).get_json()
    assert verified["status"] == "verified" and verified["verified_by"]
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    assert [e["changes"]["status"][1] for e in trail] == [
        "open",
        "in_progress",
        "resolved",
        "verified",
    ]
    phone.sync()
    assert phone.get("actions", aid)["status"] == "verified"
    reopened = api.post(path, NORTH, json={"status": "reopened", "note": "Still warm"})
    assert reopened.status_code == 200 and reopened.get_json()["resolution_note"] is None
    again = api.post(path, ANA, json={"status": "resolved"})
    assert again.status_code == 422 and again.get_json()["reason"] == "note_required"
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    assert trail[-1]["changes"]["note"] == "Still warm"


def test_ledger_filters_overdue_and_csv(completed, api, db):
    from sqlalchemy import update

    from store.models import Action

    rows = api.get("/actions", NORTH).get_json()
    # Due times run from when the server received the completion (24 h and 7 days ahead).
    assert len(rows) == 2 and not any(r["overdue"] for r in rows)
    high = next(r for r in rows if r["priority"] == "high")
    db.execute(update(Action).where(Action.id == high["id"]).values(due_at=1_000))
    assert [r["id"] for r in api.get("/actions?overdue=true", NORTH).get_json()] == [high["id"]]
    assert len(api.get("/actions?overdue=false", NORTH).get_json()) == 1
    assert api.get("/actions", SOUTH).get_json() == []
    resp = api.get("/actions?format=csv", NORTH)
    assert resp.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(table) == 2 and {r["priority"] for r in table} == {"high", "medium"}
    assert {r["id"] for r in table} == {r["id"] for r in rows}


def test_raise_action_by_hand_is_scoped(env, api):
    body = {"site_id": env["sites"]["S-STORE"], "title": "Broken tile"}
    assert api.post("/actions", ANA, json=body).status_code == 403
    body["site_id"] = env["sites"]["N-CANTEEN"]
    created = api.post("/actions", ANA, json=body)
    assert created.status_code == 201
    assert created.get_json()["status"] == "open" and created.get_json()["due_at"]


def test_rest_completion_names_unanswered_items_and_applies_the_same_rules(env, device, api):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    phone.sync()
    refused = api.post(f"/inspections/{iid}/complete", ANA)
    assert refused.status_code == 422 and refused.get_json()["reason"] == "incomplete"
    assert "fridge" in refused.get_json()["message"]
    assert api.get(f"/conflicts?inspection_id={iid}", NORTH).get_json() == []
    answer(phone, iid, "fridge", 2)
    phone.sync()
    assert api.post(f"/inspections/{iid}/complete", NORTH).status_code == 403
    done = api.post(f"/inspections/{iid}/complete", ANA)
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    assert [a["priority"] for a in view["actions"]] == ["medium"]  # clean failed
    phone.sync()
    assert phone.get("inspections", iid)["status"] == "completed"
