"""Scheduled occurrences follow a newly published version of their checklist (reviewer B's
finding): the slots nobody has started whose window has not opened are handed out in the new
version, through the revs so devices pull the change; the ones started, due, missed or done
keep the version they were handed out with."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from store.models import AuditEvent, Occurrence, TemplateVersion
from tests.conftest import ANA, BEN, HQ_EMAIL
from tests.sync_env import answer, daily_schedule, new_inspection, now_ms, open_window

UTC = dt.UTC


def _republish(api, db, env) -> str:
    """HQ makes the probe's first item critical and publishes it as v2; returns v2's id."""
    draft_id = db.get(TemplateVersion, env["template"]).draft_id
    body = api.get(f"/templates/{draft_id}", HQ_EMAIL).get_json()["body"]
    body["sections"][0]["items"][0]["critical"] = True
    assert api.patch(f"/templates/{draft_id}", HQ_EMAIL, json={"body": body}).status_code == 200
    published = api.post(f"/templates/{draft_id}/publish", HQ_EMAIL)
    assert published.status_code == 201, published.get_json()
    return published.get_json()["id"]


def _slots(db, sid: str) -> list[Occurrence]:
    db.expire_all()
    return db.query(Occurrence).filter_by(schedule_id=sid).order_by(Occurrence.due_at).all()


def test_occurrences_not_yet_started_follow_a_newly_published_version(env, device, api, db):
    """HQ republishes the scheduled checklist; the slots of the coming two weeks, not started
    yet, still hand devices the old version (sync: occurrences.template_id), while the top-up
    after them hands out the new one: one schedule, two checklists, for two weeks."""
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[env["users"][ANA]])
    v2 = _republish(api, db, env)
    tomorrow = dt.datetime.now(UTC) + dt.timedelta(days=1)
    future = (
        db.query(Occurrence)
        .filter(Occurrence.schedule_id == sid, Occurrence.due_at > tomorrow)
        .all()
    )
    assert future
    assert {o.template_id for o in future} == {v2}


def test_started_due_missed_and_done_occurrences_keep_their_version(env, device, api, db):
    """Only what nobody has begun moves: a slot with a run started from it, one whose window
    is open, one missed and one done keep v1; the phone pulls the moved ones as changes."""
    ana = env["users"][ANA]
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[ana])
    done, due, started, missed, *later = _slots(db, sid)
    open_window(db, done.id)
    open_window(db, due.id)
    now = dt.datetime.now(UTC)
    db.execute(
        update(Occurrence)
        .where(Occurrence.id == missed.id)
        .values(
            window_start=now - dt.timedelta(days=2),
            due_at=now - dt.timedelta(days=2) + dt.timedelta(hours=1),
            miss_at=now - dt.timedelta(days=1),
        )
    )
    db.commit()
    phone = device(ANA, "phone")
    phone.sync()
    fulfilling = new_inspection(phone, env, occurrence_id=done.id, mode="scheduled")
    answer(phone, fulfilling, "clean", "yes")
    answer(phone, fulfilling, "fridge", 3)
    phone.update("inspections", fulfilling, status="completed", completed_at=now_ms())
    new_inspection(phone, env, occurrence_id=started.id, mode="scheduled")  # begun early
    assert phone.sync()["conflicts"] == []
    phone.sync()
    assert phone.get("occurrences", done.id)["status"] == "done"
    v1 = env["template"]
    assert phone.get("occurrences", later[0].id)["template_id"] == v1

    v2 = _republish(api, db, env)
    slots = {o.id: o.template_id for o in _slots(db, sid)}
    assert [slots[o.id] for o in (done, due, started, missed)] == [v1] * 4
    assert {slots[o.id] for o in later} == {v2}
    phone.sync()
    assert {phone.get("occurrences", o.id)["template_id"] for o in later} == {v2}
    assert phone.get("occurrences", started.id)["template_id"] == v1
    # The publication says how many slots it moved (the audit trail of the template).
    event = (
        db.query(AuditEvent)
        .filter_by(entity="template", action="publish")
        .order_by(AuditEvent.at.desc())
        .first()
    )
    assert event.changes["version_id"] == v2
    assert event.changes["occurrences_moved"] == len(later)


def test_withdrawn_slots_given_back_follow_the_version_published_meanwhile(env, api, db):
    """Ben loses the site, HQ republishes, Ben gets the site back: his slots come back in the
    version Ana's were moved to, not in the one they were withdrawn with."""
    ana, ben, hotel = env["users"][ANA], env["users"][BEN], env["sites"]["N-HOTEL"]
    sid = daily_schedule(api, env, "sync_probe", assignee_ids=[ana, ben])
    assignment = next(
        a
        for a in api.get(f"/assignments?user_id={ben}&page_size=100", HQ_EMAIL).get_json()
        if a["site_id"] == hotel
    )
    assert api.delete(f"/assignments/{assignment['id']}", HQ_EMAIL).status_code in (200, 204)
    v2 = _republish(api, db, env)
    back = api.post("/assignments", HQ_EMAIL, json={"user_id": ben, "site_id": hotel})
    assert back.status_code in (200, 201), back.get_json()
    live = [o for o in _slots(db, sid) if o.deleted_at is None]
    assert {o.assignee_id for o in live} == {ana, ben}
    assert {o.template_id for o in live} == {v2}
