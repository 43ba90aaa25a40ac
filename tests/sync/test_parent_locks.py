"""A push takes the row locks of its records' inspections (and of the actions its photos
document) before deciding anything from their status (PostgreSQL): a change to a child of an
inspection being completed, or to a photo of an action being resolved, at the same moment waits
for that writer and is then judged by it, instead of slipping in beside it; and writers take
rows in one order, so none deadlock."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text, update

from store.models import Action, Attachment, Conflict, Inspection, Occurrence, Response
from store.types import utcnow
from tests.conftest import HQ_EMAIL, NORTH, TEST_DATABASE_URL
from tests.media.conftest import jpeg
from tests.sync_env import (
    ANA,
    action_with_photo,
    answer,
    daily_schedule,
    new_action,
    new_inspection,
    open_window,
    photo_record,
    refused_fix_photo_deletion,
)

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="SQLite writers take the one write lock at BEGIN: they never overlap",
)


def _waits_for_a_lock(engine, thread: threading.Thread) -> bool:
    """True once some backend waits for a row lock; False if the thread ends first."""
    deadline = time.monotonic() + 20
    with engine.connect() as watcher:
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = watcher.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting.scalar_one():
                return True
            watcher.rollback()
            time.sleep(0.02)
    return False


def _in_thread(target) -> tuple[threading.Thread, dict]:
    """Run `target` (a sync) in a thread; its response, or the error it raised, lands in the
    dict."""
    out: dict = {}

    def run() -> None:
        try:
            out.update(target() or {})
        except Exception as exc:  # reported by the assertions
            out["error"] = repr(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _while_held(app, held, target, *then) -> tuple[bool, dict]:
    """Another writer takes a row lock (`held`), lets `target` start and run into it, then runs
    `then` and commits; returns (whether `target` waited for a lock, its result)."""
    engine = app.extensions["db_engine"]
    with engine.connect() as other:
        other.execute(held)
        thread, out = _in_thread(target)
        waited = _waits_for_a_lock(engine, thread)
        for statement in then:
            other.execute(statement)
        other.commit()
    thread.join(60)
    return waited, out


def _refused_while_held(app, model, row_id: str, call, then, reason: str) -> None:
    """Another writer holds a row of `model` and commits `then`; the request `call` must wait
    for it and then be refused (422 `reason`), judged on what that writer committed."""
    waited, out = _while_held(
        app,
        select(model.id).where(model.id == row_id).with_for_update(),
        lambda: {"response": call()},
        then,
    )
    assert waited, f"the request decided without waiting for the {model.__tablename__} lock"
    refused = out["response"]
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["reason"] == reason


def _pushed_while_completing(app, device, iid: str, change) -> tuple[bool, dict]:
    """A second device makes `change` offline and syncs while another writer holds the
    inspection's row and completes it; returns (the push waited, its response)."""
    tab = device(ANA, "tab")
    tab.sync()
    change(tab)
    return _while_held(
        app,
        select(Inspection.id).where(Inspection.id == iid).with_for_update(),
        tab.sync,
        update(Inspection).where(Inspection.id == iid).values(status="completed"),
    )


def test_deleting_an_action_waits_for_a_completion_in_flight(app, env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    aid = new_action(phone, env, iid)
    assert phone.sync()["conflicts"] == []

    waited, result = _pushed_while_completing(
        app, device, iid, lambda tab: tab.delete("actions", aid)
    )
    assert waited, "the push decided without waiting for its inspection's lock"
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("locked", aid)]
    db.expire_all()
    assert db.get(Action, aid).deleted_at is None


def test_an_answer_waits_for_a_completion_in_flight(app, env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "yes")
    assert phone.sync()["conflicts"] == []

    waited, result = _pushed_while_completing(
        app, device, iid, lambda tab: tab.update("responses", rid, value='"no"')
    )
    assert waited, "the push decided without waiting for its inspection's lock"
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("locked", rid)]
    db.expire_all()
    assert db.get(Response, rid).value == '"yes"'


def test_a_photo_upload_and_a_push_of_its_record_do_not_deadlock(
    app, env, device, client, db, monkeypatch
):
    # The upload's completion marks the attachment uploaded, then recomputes its inspection's
    # media_complete; a push of that attachment's record, syncing meanwhile, holds the
    # inspection and waits for the attachment. Both must commit, not wait for each other.
    from api.blueprints import attachments as endpoints
    from tests.media.conftest import jpeg
    from tests.media.test_upload_flow import _upload
    from tests.sync_env import photo_record

    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 3)
    data = jpeg(64, 48)
    att = photo_record(phone, iid, rid, data)
    assert phone.sync()["conflicts"] == []
    assert db.get(Inspection, iid).media_complete is False
    assert _upload(client, phone, att, data, complete=False).status_code == 200
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("attachments", att, latitude=31.2)

    engine = app.extensions["db_engine"]
    pushed: dict = {}
    recompute = endpoints.recompute_inspection
    threads: list[threading.Thread] = []

    def recompute_while_pushed(session, attachment_id):
        # The completion is in flight: the device syncs now.
        def sync() -> None:
            try:
                pushed.update(tab.sync() or {})
            except Exception as exc:  # reported by the assertion below
                pushed["error"] = repr(exc)

        thread = threading.Thread(target=sync)
        threads.append(thread)
        thread.start()
        _waits_for_a_lock(engine, thread)
        recompute(session, attachment_id)

    monkeypatch.setattr(endpoints, "recompute_inspection", recompute_while_pushed)
    done = app.test_client().post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    threads[0].join(60)
    assert done.status_code == 200, done.get_json()
    # Waited, then told that the attachment changed meanwhile (it was bumped): the device
    # pulls and pushes again. Not a 503 from a deadlock.
    assert pushed.get("conflicts") == [] or "stale_push" in pushed.get("error", ""), pushed
    tab.sync()
    db.expire_all()
    assert db.get(Inspection, iid).media_complete is True
    assert db.get(Attachment, att).latitude == 31.2


def test_resolving_an_action_conflict_and_a_push_of_the_action_do_not_deadlock(
    app, env, device, api, db, monkeypatch
):
    # Resolving the action's conflict holds the action, then clears its inspection's
    # has_conflicts flag; a push of that action, syncing meanwhile, holds the inspection and
    # waits for the action. Both must commit, not wait for each other.
    from inspections.plan_rules import InspectionRules
    from tests.conftest import NORTH
    from tests.sync_env import concurrent_action_edit

    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    aid = new_action(phone, env, iid)
    assert phone.sync()["conflicts"] == []
    conflict = concurrent_action_edit(device, db, aid)
    phone.sync()
    answer(phone, iid, "remark", "checked")  # the inspection counts its open conflicts
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Inspection, iid).has_conflicts is True
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("actions", aid, priority="high")

    engine = app.extensions["db_engine"]
    pushed: dict = {}
    threads: list[threading.Thread] = []
    apply = InspectionRules.apply
    main = threading.current_thread()

    def sync() -> None:
        try:
            pushed.update(tab.sync() or {})
        except Exception as exc:  # reported by the assertion below
            pushed["error"] = repr(exc)

    def apply_while_pushed(self, session, cs):
        if threading.current_thread() is main and not threads:
            # The resolution is in flight, its action held: the device syncs now.
            thread = threading.Thread(target=sync)
            threads.append(thread)
            thread.start()
            _waits_for_a_lock(engine, thread)
        return apply(self, session, cs)

    monkeypatch.setattr(InspectionRules, "apply", apply_while_pushed)
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "keep_server"})
    threads[0].join(60)
    assert resp.status_code == 200, resp.get_json()
    assert pushed.get("conflicts") == [] or "stale_push" in pushed.get("error", ""), pushed
    tab.sync()
    db.expire_all()
    assert db.get(Conflict, conflict.id).resolved_at is not None
    assert db.get(Action, aid).priority == "high"


def test_deleting_a_fix_photo_waits_for_a_resolution_in_flight(app, env, device, db):
    # A resolved action's photos are its evidence and locked with it: a device deleting one
    # while a manager resolves the action waits, and is then refused.
    aid, att = action_with_photo(env, device)
    tab = device(ANA, "tab")
    tab.sync()
    tab.delete("attachments", att)
    waited, result = _while_held(
        app,
        select(Action.id).where(Action.id == aid).with_for_update(),
        tab.sync,
        update(Action).where(Action.id == aid).values(status="resolved"),
    )
    assert waited, "the push decided without waiting for the action's lock"
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("locked", att)]
    db.expire_all()
    assert db.get(Attachment, att).deleted_at is None


def test_resolving_waits_for_a_push_deleting_the_last_photo(app, env, device, api, db):
    # The other way round: the push holds the action while it deletes the only photo; the
    # resolution then finds no evidence, instead of resolving on a photo that is gone.
    aid, att = action_with_photo(env, device)
    body = {"status": "resolved", "note": "Cleaned"}
    _refused_while_held(
        app,
        Action,
        aid,
        lambda: api.post(f"/actions/{aid}/transition", ANA, json=body),
        update(Attachment).where(Attachment.id == att).values(deleted_at=utcnow()),
        "evidence_required",
    )
    db.expire_all()
    assert db.get(Action, aid).status == "open"


def test_deleting_an_inspection_and_a_push_of_its_action_photo_do_not_deadlock(
    app, env, device, db, monkeypatch
):
    # Deleting the inspection deletes its action and the action's photo (which names no
    # inspection) with it, unlocked until written; a push editing the photo holds the action,
    # then the photo. The deletion must write the action before its photo, as the push locks
    # them, or each waits for the other.
    from sync import writer

    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    photo_record(phone, iid, None, jpeg(41, 30))  # a photo of the inspection itself
    aid = new_action(phone, env, iid)
    att = photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    assert phone.sync()["conflicts"] == []
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("attachments", att, latitude=31.2)
    phone.delete("inspections", iid)

    engine = app.extensions["db_engine"]
    load_rows = writer.load_rows
    main = threading.current_thread()
    deleting: list = []

    def load_then_delete(session, table, column, values, lock=False):
        rows = load_rows(session, table, column, values, lock=lock)
        if threading.current_thread() is main and table.name == "actions" and not deleting:
            # The push holds the action, not yet its photo: the inspection is deleted now.
            deleting.append(_in_thread(phone.sync))
            _waits_for_a_lock(engine, deleting[0][0])
        return rows

    monkeypatch.setattr(writer, "load_rows", load_then_delete)
    try:
        pushed = tab.sync() or {}
    except Exception as exc:  # reported by the assertions
        pushed = {"error": repr(exc)}
    thread, deleted = deleting[0]
    thread.join(60)
    assert pushed.get("conflicts") == [], pushed
    assert deleted.get("conflicts") == [], deleted
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None
    assert db.get(Action, aid).deleted_at is not None
    photo = db.get(Attachment, att)
    assert photo.deleted_at is not None and photo.latitude == 31.2


def test_a_child_pushed_under_another_inspection_locks_its_own_first(app, env, device, db):
    # A device sends an answer naming another inspection than the one it is stored under
    # (placement keeps it there). The push must take that stored inspection before the
    # answer, as every writer does, not after it: a writer holding the stored inspection
    # and then the answer (a push of it naming its real inspection) would wait for it, and
    # it for that writer.
    phone = device(ANA, "phone")
    phone.sync()
    home = new_inspection(phone, env)
    other = new_inspection(phone, env)
    rid = answer(phone, home, "clean", "yes")
    assert phone.sync()["conflicts"] == []
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("responses", rid, inspection_id=other)

    # The other writer holds the answer's inspection, about to take the answer.
    waited, pushed = _while_held(
        app,
        select(Inspection.id).where(Inspection.id == home).with_for_update(),
        tab.sync,
        select(Response.id).where(Response.id == rid).with_for_update(),
        update(Response).where(Response.id == rid).values(note="seen"),
    )
    assert waited
    assert "error" not in pushed, pushed
    assert [(c["kind"], c["column"]) for c in pushed["conflicts"]] == [
        ("invalid_value", "inspection_id")
    ]
    db.expire_all()
    assert db.get(Response, rid).inspection_id == home


def test_a_photo_pushed_under_another_action_locks_its_own_first(app, env, device, db):
    # The same for a photo naming another action than the one it documents: its stored
    # action is taken before the photo, as a push of the photo naming it takes them.
    aid, att = action_with_photo(env, device)
    phone = device(ANA, "phone")
    phone.sync()
    other = new_action(phone, env, None)
    assert phone.sync()["conflicts"] == []
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("attachments", att, action_id=other)

    waited, pushed = _while_held(
        app,
        select(Action.id).where(Action.id == aid).with_for_update(),
        tab.sync,
        select(Attachment.id).where(Attachment.id == att).with_for_update(),
        update(Attachment).where(Attachment.id == att).values(latitude=31.2),
    )
    assert waited
    assert "error" not in pushed, pushed
    assert [(c["kind"], c["column"]) for c in pushed["conflicts"]] == [
        ("invalid_value", "action_id")
    ]
    db.expire_all()
    assert db.get(Attachment, att).action_id == aid


def test_taking_an_inspection_deletion_and_a_push_of_its_action_photo_do_not_deadlock(
    app, env, device, api, db, monkeypatch
):
    # The same through conflict resolution: taking a device's deletion of the inspection
    # deletes its action and the action's photo; it must write them in that order too.
    from sync import writer
    from tests.conftest import BEN, NORTH

    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    photo_record(phone, iid, None, jpeg(41, 30))
    aid = new_action(phone, env, iid)
    att = photo_record(phone, None, None, jpeg(40, 30), action_id=aid)
    assert phone.sync()["conflicts"] == []
    ben = device(BEN, "ben")
    ben.sync()
    ben.delete("inspections", iid)
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    tab = device(ANA, "tab")
    tab.sync()
    tab.update("attachments", att, latitude=31.2)

    engine = app.extensions["db_engine"]
    load_rows = writer.load_rows
    main = threading.current_thread()
    resolving: list = []

    def load_then_resolve(session, table, column, values, lock=False):
        rows = load_rows(session, table, column, values, lock=lock)
        if threading.current_thread() is main and table.name == "actions" and not resolving:
            body = {"resolution": "take_device"}
            thread, out = _in_thread(
                lambda: {"resp": api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json=body)}
            )
            resolving.append((thread, out))
            _waits_for_a_lock(engine, thread)
        return rows

    monkeypatch.setattr(writer, "load_rows", load_then_resolve)
    try:
        pushed = tab.sync() or {}
    except Exception as exc:  # reported by the assertions
        pushed = {"error": repr(exc)}
    thread, out = resolving[0]
    thread.join(60)
    assert pushed.get("conflicts") == [], pushed
    assert out["resp"].status_code == 200, out["resp"].get_json()
    db.expire_all()
    assert db.get(Action, aid).deleted_at is not None
    photo = db.get(Attachment, att)
    assert photo.deleted_at is not None and photo.latitude == 31.2


def test_a_push_fulfilling_two_occurrences_writes_them_in_id_order(app, env, api, device, db):
    # A push completing two scheduled inspections marks their occurrences done; withdrawing
    # the inspector's future occurrences (a revoked site assignment) updates the same rows in
    # id order (SQLAlchemy flushes updates by primary key). The push must write them in id
    # order too, not in its inspections' order, or each holds one the other waits for.
    schedule = daily_schedule(api, env, assignee_ids=[env["users"][ANA]])
    future = (
        db.query(Occurrence)
        .filter(Occurrence.schedule_id == schedule, Occurrence.due_at > utcnow())
        .all()
    )
    low, high = sorted(o.id for o in future)[:2]
    for occ_id in (low, high):
        open_window(db, occ_id)
    phone = device(ANA, "phone")
    phone.sync()
    made = []
    for _ in range(2):
        iid = new_inspection(phone, env, mode="scheduled")
        answer(phone, iid, "clean", "yes")
        answer(phone, iid, "fridge", 3)
        made.append(iid)
    assert phone.sync()["conflicts"] == []
    first, second = sorted(made)
    # The inspections' order is not the occurrences' order.
    phone.update("inspections", first, occurrence_id=high, status="completed")
    phone.update("inspections", second, occurrence_id=low, status="completed")

    waited, pushed = _while_held(
        app,
        select(Occurrence.id).where(Occurrence.id == low).with_for_update(),
        phone.sync,
        select(Occurrence.id).where(Occurrence.id == high).with_for_update(),
    )
    assert waited
    assert pushed.get("conflicts") == [], pushed
    db.expire_all()
    assert db.get(Occurrence, low).inspection_id == second
    assert db.get(Occurrence, high).inspection_id == first


def test_withdrawing_occurrences_skips_one_fulfilled_meanwhile(app, env, api, db):
    # An inspector's account is closed while a push fulfils one of their occurrences: the
    # withdrawal waits for the push and leaves the done occurrence alone, instead of deleting
    # it after reading it as still to do.
    ana = env["users"][ANA]
    daily_schedule(api, env, assignee_ids=[ana])
    occ = (
        db.query(Occurrence)
        .filter(Occurrence.assignee_id == ana, Occurrence.deleted_at.is_(None))
        .order_by(Occurrence.due_at.desc())
        .first()
        .id
    )
    waited, out = _while_held(
        app,
        select(Occurrence.id).where(Occurrence.id == occ).with_for_update(),
        lambda: {"response": api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": False})},
        update(Occurrence).where(Occurrence.id == occ).values(status="done"),
    )
    assert waited
    assert out["response"].status_code == 200, out["response"].get_json()
    db.expire_all()
    done = db.get(Occurrence, occ)
    assert (done.status, done.deleted_at) == ("done", None)


def test_a_review_waits_for_another_review_in_flight(app, completed, api, db):
    # HQ approves while a regional manager returns the same inspection: the second decision
    # is judged on the first one's outcome, not on the status both read before either wrote.
    _phone, iid = completed
    return_it = {"comment": "Redo the fridge check"}
    _refused_while_held(
        app,
        Inspection,
        iid,
        lambda: api.post(f"/inspections/{iid}/return", NORTH, json=return_it),
        update(Inspection).where(Inspection.id == iid).values(status="approved"),
        "invalid_transition",
    )
    db.expire_all()
    assert db.get(Inspection, iid).status == "approved"


def test_taking_a_photo_deletion_waits_for_its_action_being_resolved(app, env, device, api, db):
    # A fix photo whose deletion was refused (its action was resolved) may be deleted once
    # the action is reopened; taking that deletion while the action is resolved again must
    # wait for it and then keep the photo, as a push deleting it would.
    aid, att, conflict = refused_fix_photo_deletion(env, device, api, db)
    again = {"status": "reopened", "note": "Still dirty"}
    assert api.post(f"/actions/{aid}/transition", NORTH, json=again).status_code == 200

    take = {"resolution": "take_device"}
    _refused_while_held(
        app,
        Action,
        aid,
        lambda: api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json=take),
        update(Action).where(Action.id == aid).values(status="resolved"),
        "locked",
    )
    db.expire_all()
    assert db.get(Attachment, att).deleted_at is None


def test_taking_a_created_answer_waits_for_its_inspection_being_completed(app, completed, api, db):
    # An answer made after the inspection was completed was refused as locked, and may be
    # created once the inspection is returned; taking it while the inspection is completed
    # again must wait for that and then refuse it, as a push creating it would.
    phone, iid = completed
    late = answer(phone, iid, "remark", "seen late")
    assert [(c["kind"], c["id"]) for c in phone.sync()["conflicts"]] == [("locked", late)]
    conflict = db.query(Conflict).filter_by(record_id=late, kind="locked").one()
    redo = {"comment": "Add the remark"}
    assert api.post(f"/inspections/{iid}/return", NORTH, json=redo).status_code == 200

    take = {"resolution": "take_device"}
    _refused_while_held(
        app,
        Inspection,
        iid,
        lambda: api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json=take),
        update(Inspection).where(Inspection.id == iid).values(status="completed"),
        "locked",
    )
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"
    assert db.get(Response, late) is None
    assert db.get(Conflict, conflict.id).resolved_at is None


def test_two_concurrent_rest_completions_open_each_action_once(app, env, device, api, db):
    # A double tap (or a client retry after a timeout) sends POST /complete twice at once,
    # while something else (a push of another of Ana's devices, say) holds the row. Both
    # requests judged it in_progress and both opened the corrective actions: two per failed
    # item, against "never twice for the same response". The second must see the first's
    # completion and change nothing.
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    phone.sync()
    token = api.headers(ANA)
    engine = app.extensions["db_engine"]
    holder = engine.connect()
    tx = holder.begin()
    holder.execute(text("SELECT id FROM inspections WHERE id = :i FOR UPDATE"), {"i": iid})
    codes = []

    def complete():
        with app.test_client() as c:
            codes.append(c.post(f"/api/v1/inspections/{iid}/complete", headers=token).status_code)

    threads = [threading.Thread(target=complete) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2)
    tx.rollback()
    holder.close()
    for t in threads:
        t.join(30)
    assert codes == [200, 200], codes
    db.expire_all()
    actions = db.query(Action).filter_by(inspection_id=iid).all()
    assert len(actions) == 2, [(a.response_id, a.priority) for a in actions]


def test_a_rest_completion_waits_for_a_completion_in_flight(app, env, device, api, db):
    # A push completes the inspection while its inspector taps "complete" in the web app: the
    # request waits for the push and answers with its outcome, opening nothing of its own.
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    phone.sync()
    waited, out = _while_held(
        app,
        select(Inspection.id).where(Inspection.id == iid).with_for_update(),
        lambda: {"response": api.post(f"/inspections/{iid}/complete", ANA)},
        update(Inspection).where(Inspection.id == iid).values(status="completed"),
    )
    assert waited, "the completion decided without waiting for its inspection's lock"
    done = out["response"]
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed"
    db.expire_all()
    assert db.query(Action).filter_by(inspection_id=iid).count() == 0
