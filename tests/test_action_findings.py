"""Reviewer findings on corrective actions and fulfilled occurrences: evidence synced earlier
counts for a device's resolve, the resolution note records only what was done, and only an
inspection of the scheduled checklist fulfils an occurrence."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from store.models import Occurrence, TemplateVersion
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.media.conftest import jpeg
from tests.sync_env import (
    answer,
    daily_schedule,
    new_action,
    new_inspection,
    now_ms,
    open_window,
    photo_record,
    upload_photo,
)

# --- helpers ----------------------------------------------------------------------------------


def _high(api, iid):
    """The critical item's action of a completed inspection."""
    actions = api.get(f"/actions?inspection_id={iid}", ANA).get_json()
    return next(a for a in actions if a["priority"] == "high")["id"]


def _first_occurrence(db, schedule_id):
    """The schedule's earliest occurrence, its window open."""
    occ = (
        db.query(Occurrence).filter_by(schedule_id=schedule_id).order_by(Occurrence.due_at).first()
    )
    open_window(db, occ.id)
    return occ


def _complete_linked(phone, env, occurrence_id, site="N-HOTEL", template=None):
    """Run a passing sync_probe inspection linked to an occurrence; returns (id, push result)."""
    extra = {"template_id": template} if template else {}
    iid = new_inspection(phone, env, site, occurrence_id=occurrence_id, mode="scheduled")
    if template:
        phone.update("inspections", iid, **extra)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed")
    return iid, phone.sync()


def _occurrence_conflicts(result, iid):
    """Conflicts a push reported on the inspection's occurrence link."""
    return [
        c
        for c in result["conflicts"]
        if c["table"] == "inspections" and c["id"] == iid and c["column"] == "occurrence_id"
    ]


# --- A: evidence synced in an earlier push --------------------------------------------------


def test_a_device_resolves_an_action_whose_photo_it_synced_earlier(completed, api):
    """A photo synced in an earlier push is evidence for a device's resolve, as over REST."""
    phone, iid = completed
    aid = _high(api, iid)
    photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    assert phone.sync()["conflicts"] == []
    phone.update("actions", aid, status="resolved", resolution_note="Thermostat replaced")
    result = phone.sync()
    assert result["conflicts"] == [], result["conflicts"]
    assert api.get(f"/actions/{aid}", NORTH).get_json()["status"] == "resolved"


def test_a_device_cannot_resolve_while_deleting_its_only_photo(completed, api):
    """Deleting the only stored photo in the resolving push leaves no evidence: refused."""
    phone, iid = completed
    aid = _high(api, iid)
    att = photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    phone.sync()
    phone.delete("attachments", att)
    phone.update("actions", aid, status="resolved", resolution_note="Thermostat replaced")
    result = phone.sync()
    refused = [c for c in result["conflicts"] if c["table"] == "actions" and c["id"] == aid]
    assert [c["kind"] for c in refused] == ["lifecycle"], result["conflicts"]
    assert "evidence" in refused[0]["detail"]
    assert api.get(f"/actions/{aid}", NORTH).get_json()["status"] == "open"


# --- B: the resolution note is what was done ----------------------------------------------


def test_verifying_with_a_comment_keeps_the_resolution_note(completed, api):
    """A verifier's comment goes to the audit trail; the record of the fix stays."""
    phone, iid = completed
    aid = _high(api, iid)
    data = jpeg(40, 30)
    att = photo_record(phone, None, None, data, action_id=aid)
    phone.sync()
    upload_photo(phone, att, data)
    path = f"/actions/{aid}/transition"
    resolved = api.post(path, ANA, json={"status": "resolved", "note": "Thermostat replaced"})
    assert resolved.status_code == 200
    verified = api.post(path, NORTH, json={"status": "verified", "note": "Checked on site, 4 C"})
    assert verified.status_code == 200
    assert verified.get_json()["resolution_note"] == "Thermostat replaced"
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    assert trail[-1]["changes"]["note"] == "Checked on site, 4 C"


def test_a_start_note_is_not_a_resolution_note(completed, api):
    """A note given when starting work neither becomes nor stands in for the resolution note."""
    phone, iid = completed
    aid = _high(api, iid)
    photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    phone.sync()
    path = f"/actions/{aid}/transition"
    started = api.post(path, ANA, json={"status": "in_progress", "note": "Technician booked"})
    assert started.status_code == 200 and started.get_json()["resolution_note"] is None
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    assert trail[-1]["changes"]["note"] == "Technician booked"
    resp = api.post(path, ANA, json={"status": "resolved"})
    assert resp.status_code == 422 and resp.get_json()["reason"] == "note_required"


def test_a_device_resolving_after_a_start_note_gives_its_own_note(completed, api):
    """The device path agrees: a start note given over REST does not resolve a device's action."""
    phone, iid = completed
    aid = _high(api, iid)
    path = f"/actions/{aid}/transition"
    assert api.post(path, ANA, json={"status": "in_progress", "note": "Booked"}).status_code == 200
    phone.sync()
    assert phone.get("actions", aid)["resolution_note"] is None
    photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    phone.update("actions", aid, status="resolved")
    result = phone.sync()
    refused = [c for c in result["conflicts"] if c["table"] == "actions" and c["id"] == aid]
    assert [c["kind"] for c in refused] == ["lifecycle"], result["conflicts"]
    assert api.get(f"/actions/{aid}", NORTH).get_json()["status"] == "in_progress"


# --- C: which inspection fulfils an occurrence ----------------------------------------------


def test_an_inspection_of_another_template_does_not_fulfil_the_occurrence(api, env, device, db):
    """A sync_probe inspection linked to a 5S slot leaves it open and says why."""
    occ = _first_occurrence(
        db, daily_schedule(api, env, "five_s", assignee_ids=[env["users"][ANA]])
    )
    phone = device(ANA)
    phone.sync()
    iid, result = _complete_linked(phone, env, occ.id)
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"
    notes = _occurrence_conflicts(result, iid)
    assert [c["kind"] for c in notes] == ["invalid_value"], result["conflicts"]
    assert "five_s" in notes[0]["detail"] and "occurrence_id" in notes[0]["detail"]
    # The inspection itself still counts as completed, flagged for the reviewer.
    shown = api.get(f"/inspections/{iid}", NORTH).get_json()
    assert shown["inspection"]["status"] == "completed"
    assert shown["inspection"]["has_conflicts"] is True
    assert any(c.get("column") == "occurrence_id" for c in shown["conflicts"]), shown["conflicts"]


def test_an_inspection_at_another_site_does_not_fulfil_the_occurrence(api, env, device, db):
    """An occurrence at N-HOTEL is not done by an inspection at N-CANTEEN."""
    occ = _first_occurrence(
        db, daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    )
    phone = device(ANA)
    phone.sync()
    iid, result = _complete_linked(phone, env, occ.id, site="N-CANTEEN")
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"
    assert [c["kind"] for c in _occurrence_conflicts(result, iid)] == ["invalid_value"]


def test_a_withdrawn_occurrence_is_not_fulfilled(api, env, device, db):
    """An occurrence withdrawn from devices (deleted) stays withdrawn."""
    occ = _first_occurrence(
        db, daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    )
    phone = device(ANA)
    phone.sync()
    db.execute(update(Occurrence).where(Occurrence.id == occ.id).values(deleted_at=occ.due_at))
    iid, result = _complete_linked(phone, env, occ.id)
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"
    assert [c["kind"] for c in _occurrence_conflicts(result, iid)] == ["invalid_value"]


def test_another_inspectors_occurrence_is_not_fulfilled_by_my_run(api, env, device, db):
    """Two assignees, an occurrence each per slot: Ben's run counts for his, not Ana's (it made
    hers done and left his missed)."""
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][u] for u in (ANA, BEN)])
    first = _first_occurrence(db, sid)
    slot = db.query(Occurrence).filter_by(schedule_id=sid, due_at=first.due_at).all()
    by = {o.assignee_id: o.id for o in slot}
    for occ_id in by.values():
        open_window(db, occ_id)
    ben = device(BEN)
    ben.sync()
    iid, result = _complete_linked(ben, env, by[env["users"][ANA]])
    notes = _occurrence_conflicts(result, iid)
    assert [c["kind"] for c in notes] == ["invalid_value"], result["conflicts"]
    assert "another inspector" in notes[0]["detail"]
    db.expire_all()
    assert db.get(Occurrence, by[env["users"][ANA]]).status != "done"
    # His own occurrence of that slot is his to fulfil.
    mine, result = _complete_linked(ben, env, by[env["users"][BEN]])
    assert _occurrence_conflicts(result, mine) == [], result["conflicts"]
    db.expire_all()
    assert db.get(Occurrence, by[env["users"][BEN]]).status == "done"


def test_a_run_completed_before_the_window_opens_does_not_fulfil_it(api, env, device, db):
    """An occurrence whose window opens tomorrow is not done by a run completed today."""
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    occ = db.query(Occurrence).filter_by(schedule_id=sid).order_by(Occurrence.due_at).first()
    db.execute(update(Occurrence).where(Occurrence.id == occ.id).values(window_start=later))
    db.commit()
    phone = device(ANA)
    phone.sync()
    iid, result = _complete_linked(phone, env, occ.id)
    notes = _occurrence_conflicts(result, iid)
    assert [c["kind"] for c in notes] == ["invalid_value"], result["conflicts"]
    assert "window opens" in notes[0]["detail"]
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"


def _missed_three_days_ago(api, env, db) -> Occurrence:
    """A schedule's earliest occurrence, moved to a slot three days ago: due, then missed two
    hours after."""
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    occ = db.query(Occurrence).filter_by(schedule_id=sid).order_by(Occurrence.due_at).first()
    due = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    db.execute(
        update(Occurrence)
        .where(Occurrence.id == occ.id)
        .values(
            window_start=due - dt.timedelta(hours=1),
            due_at=due,
            miss_at=due + dt.timedelta(hours=2),
        )
    )
    db.commit()
    listed = api.get(f"/occurrences?schedule_id={sid}", NORTH).get_json()
    assert next(o for o in listed if o["id"] == occ.id)["status"] == "missed"
    return occ


def test_a_run_completed_after_the_occurrence_was_missed_does_not_fulfil_it(api, env, device, db):
    """Completed three days after its slot was missed: it stays missed, as a run completed
    before the window opens does not count either; the refusal is a conflict for review."""
    occ = _missed_three_days_ago(api, env, db)
    phone = device(ANA)
    phone.sync()
    iid, result = _complete_linked(phone, env, occ.id)
    notes = _occurrence_conflicts(result, iid)
    assert [c["kind"] for c in notes] == ["invalid_value"], result["conflicts"]
    assert "missed" in notes[0]["detail"]
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"
    listed = api.get(f"/occurrences?schedule_id={occ.schedule_id}", NORTH).get_json()
    assert next(o for o in listed if o["id"] == occ.id)["status"] == "missed"
    # The inspection itself is kept, completed, and flagged for its reviewer.
    insp = api.get(f"/inspections/{iid}", NORTH).get_json()["inspection"]
    assert (insp["status"], insp["has_conflicts"]) == ("completed", True)


def test_a_run_completed_in_time_but_synced_late_fulfils_the_occurrence(api, env, device, db):
    """The phone was offline: completed within the window, pushed days after the miss."""
    occ = _missed_three_days_ago(api, env, db)
    phone = device(ANA)
    phone.sync()
    in_time = int(occ.due_at.replace(tzinfo=occ.due_at.tzinfo or dt.UTC).timestamp() * 1000)
    iid = new_inspection(phone, env, occurrence_id=occ.id, mode="scheduled")
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=in_time)
    result = phone.sync()
    assert _occurrence_conflicts(result, iid) == [], result["conflicts"]
    db.expire_all()
    done = db.get(Occurrence, occ.id)
    assert (done.status, done.inspection_id) == ("done", iid)


def _rework(api, phone, iid: str) -> dict:
    """North returns the run; the phone takes it back and completes it again now."""
    back = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "redo the fridge"})
    assert back.status_code == 200, back.get_json()
    phone.sync()
    phone.update("inspections", iid, status="in_progress")
    assert phone.sync()["conflicts"] == []
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    return phone.sync()


def test_a_run_returned_for_rework_fulfils_its_occurrence_again_after_the_miss(
    api, env, device, db
):
    """Done in time, returned, completed again days after the miss: the rework corrects a run
    that was on time, so the occurrence is done again; one late all along stays missed."""
    occ = _missed_three_days_ago(api, env, db)
    phone = device(ANA)
    phone.sync()
    in_time = int(occ.due_at.replace(tzinfo=occ.due_at.tzinfo or dt.UTC).timestamp() * 1000)
    iid = new_inspection(phone, env, occurrence_id=occ.id, mode="scheduled")
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=in_time)
    phone.sync()
    result = _rework(api, phone, iid)
    assert _occurrence_conflicts(result, iid) == [], result["conflicts"]
    db.expire_all()
    done = db.get(Occurrence, occ.id)
    assert (done.status, done.inspection_id) == ("done", iid)
    late = _missed_three_days_ago(api, env, db)
    late_run, _ = _complete_linked(phone, env, late.id)
    result = _rework(api, phone, late_run)
    assert "missed" in _occurrence_conflicts(result, late_run)[0]["detail"]
    db.expire_all()
    assert db.get(Occurrence, late.id).status != "done"


def test_a_rest_completion_after_the_miss_does_not_fulfil_the_occurrence(api, env, device, db):
    """Over REST the completion time is the server's: after the miss, the occurrence stays
    missed and the refusal is recorded as a conflict, as for a synced completion."""
    occ = _missed_three_days_ago(api, env, db)
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env, occurrence_id=occ.id, mode="scheduled")
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.sync()
    done = api.post(f"/inspections/{iid}/complete", ANA)
    assert done.status_code == 200, done.get_json()
    db.expire_all()
    assert db.get(Occurrence, occ.id).status != "done"
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    refused = [c for c in view["conflicts"] if c["column"] == "occurrence_id"]
    assert [c["kind"] for c in refused] == ["invalid_value"], view["conflicts"]
    assert "missed" in refused[0]["detail"]


def test_a_newer_version_of_the_scheduled_template_fulfils_the_occurrence(api, env, device, db):
    """The match is on the template, not its version: a republished checklist still counts."""
    occ = _first_occurrence(
        db, daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    )
    draft_id = db.get(TemplateVersion, env["template"]).draft_id
    newer = api.post(f"/templates/{draft_id}/publish", HQ_EMAIL)
    assert newer.status_code in (200, 201), newer.get_json()
    assert newer.get_json()["id"] != occ.template_id
    phone = device(ANA)
    phone.sync()
    iid, result = _complete_linked(phone, env, occ.id, template=newer.get_json()["id"])
    assert result["conflicts"] == [], result["conflicts"]
    db.expire_all()
    done = db.get(Occurrence, occ.id)
    assert done.status == "done" and done.inspection_id == iid


# --- device moves record what REST moves record ---------------------------------------------


def test_a_managers_device_verifies_and_reopens_as_rest_does(completed, api, device):
    """Verifying on a device names the verifier; reopening clears the note and the verifier."""
    phone, iid = completed
    aid = _high(api, iid)
    data = jpeg(40, 30)
    att = photo_record(phone, None, None, data, action_id=aid)
    phone.update("actions", aid, status="resolved", resolution_note="Thermostat replaced")
    assert phone.sync()["conflicts"] == []
    manager = device(NORTH, "tablet")
    manager.sync()
    manager.update("actions", aid, status="verified")
    # Before the photo's bytes arrive there is nothing to look at: refused, kept as a conflict.
    refused = manager.sync()["conflicts"]
    assert [(c["kind"], c["id"]) for c in refused] == [("lifecycle", aid)]
    assert "uploaded" in refused[0]["detail"]
    upload_photo(phone, att, data)
    manager.sync()
    manager.update("actions", aid, status="verified")
    assert manager.sync()["conflicts"] == []
    shown = api.get(f"/actions/{aid}", NORTH).get_json()
    assert shown["verified_by"] and shown["resolution_note"] == "Thermostat replaced"
    manager.update("actions", aid, status="reopened")
    assert manager.sync()["conflicts"] == []
    shown = api.get(f"/actions/{aid}", NORTH).get_json()
    assert shown["verified_by"] is None and shown["resolution_note"] is None
    manager.sync()
    assert manager.get("actions", aid)["resolution_note"] is None


# --- the evidence of a fix stays ---------------------------------------------------------------


def test_a_device_cannot_delete_the_photo_of_a_resolved_action(completed, api):
    """The photo that evidences a fix is kept once the action is resolved or verified."""
    phone, iid = completed
    aid = _high(api, iid)
    data = jpeg(40, 30)
    att = photo_record(phone, None, None, data, action_id=aid)
    assert phone.sync()["conflicts"] == []
    upload_photo(phone, att, data)
    phone.update("actions", aid, status="resolved", resolution_note="Thermostat replaced")
    assert phone.sync()["conflicts"] == []
    for status in ("resolved", "verified"):
        if status == "verified":
            path = f"/actions/{aid}/transition"
            assert api.post(path, NORTH, json={"status": "verified"}).status_code == 200
            phone.sync()
        phone.delete("attachments", att)
        result = phone.sync()
        assert [(c["table"], c["id"], c["kind"]) for c in result["conflicts"]] == [
            ("attachments", att, "locked")
        ]
        phone.sync()
        assert att in phone.live("attachments")  # the next sync gives the device it back
        assert api.get(f"/attachments/{att}", NORTH).status_code == 200
    reopen = {"status": "reopened", "note": "still warm"}
    assert api.post(f"/actions/{aid}/transition", NORTH, json=reopen).status_code == 200
    phone.sync()
    phone.delete("attachments", att)
    assert phone.sync()["conflicts"] == []
    assert api.get(f"/attachments/{att}", NORTH).status_code == 404


def test_a_kept_fix_photo_flags_its_inspection(env, device, db):
    """The locked conflict of a refused deletion of fix evidence shows on its inspection."""
    from store.models import Conflict, Inspection

    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    aid = new_action(phone, env, iid, title="Broken tap", status="open", priority="medium")
    att = photo_record(phone, iid, None, jpeg(40, 30), action_id=aid)
    assert phone.sync()["conflicts"] == []
    phone.update("actions", aid, status="resolved", resolution_note="New tap fitted")
    assert phone.sync()["conflicts"] == []
    phone.delete("attachments", att)
    result = phone.sync()
    assert [(c["table"], c["kind"]) for c in result["conflicts"]] == [("attachments", "locked")]
    db.expire_all()
    assert db.query(Conflict).filter_by(inspection_id=iid, resolved_at=None).count() == 1
    assert db.get(Inspection, iid).has_conflicts is True


def test_no_action_is_raised_on_a_deleted_inspection(env, device, api, db):
    # A deleted inspection is as unknown to a new action as one that never existed.
    from store.models import Action, Inspection
    from store.types import utcnow

    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    db.execute(update(Inspection).where(Inspection.id == iid).values(deleted_at=utcnow()))
    db.commit()
    resp = api.post("/actions", NORTH, json={"inspection_id": iid, "title": "Fix the seal"})
    assert resp.status_code == 422, resp.get_json()
    assert "inspection_id" in resp.get_json()["errors"]
    assert db.query(Action).filter_by(inspection_id=iid).count() == 0
