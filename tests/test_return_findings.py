"""Returning an inspection for rework takes back what its completion counted: the compliance
figures (also once HQ archives it) and the occurrence it fulfilled."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from store.models import Inspection, Occurrence
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.sync_env import answer, daily_schedule, new_inspection, open_window
from tests.test_report_rollups import assert_consistent

PERIOD = f"start={quote('2000-01-01T00:00:00Z')}&end={quote('2100-01-01T00:00:00Z')}"
COMPLIANCE = f"/reports/compliance?{PERIOD}&template_key=sync_probe"


def _completed_count(api) -> int:
    """inspections_completed over all time, summed over the report's rows."""
    return sum(r["inspections_completed"] for r in api.get(COMPLIANCE, HQ_EMAIL).get_json())


def _hand_count(db, ever_done: set[str]) -> int:
    """Completed or approved now, or archived from one of those (the test knows which)."""
    db.expire_all()
    rows = db.query(Inspection).filter(Inspection.deleted_at.is_(None)).all()
    return sum(
        1
        for i in rows
        if i.status in ("completed", "approved") or (i.status == "archived" and i.id in ever_done)
    )


def _complete(phone, env, occurrence_id: str | None = None) -> str:
    """The phone runs and completes a passing inspection (optionally for an occurrence)."""
    extra = {"occurrence_id": occurrence_id, "mode": "scheduled"} if occurrence_id else {}
    iid = new_inspection(phone, env, **extra)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    return iid


def _return(api, iid: str) -> None:
    resp = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "redo"})
    assert resp.status_code == 200, resp.get_json()


def _archive(api, iid: str) -> None:
    resp = api.post(f"/inspections/{iid}/archive", HQ_EMAIL)
    assert resp.status_code == 200, resp.get_json()


def _first_occurrence(db, schedule_id: str) -> Occurrence:
    """The schedule's earliest occurrence, its window open."""
    occ = (
        db.query(Occurrence).filter_by(schedule_id=schedule_id).order_by(Occurrence.due_at).first()
    )
    open_window(db, occ.id)
    return occ


def _occurrence(db, occ_id: str) -> Occurrence:
    db.expire_all()
    return db.get(Occurrence, occ_id)


# --- finding 1: an archived inspection counts only if it was done when archived ------------


def test_archiving_a_returned_inspection_does_not_count_it_completed_again(api, completed, app, db):
    """A failed inspection returned for rework and archived stays out of every report."""
    _, iid = completed
    assert _completed_count(api) == 1 == _hand_count(db, {iid})
    _return(api, iid)
    assert _completed_count(api) == 0 == _hand_count(db, set())
    _archive(api, iid)
    assert _completed_count(api) == 0 == _hand_count(db, set())
    assert api.get(f"/reports/failing-items?{PERIOD}", HQ_EMAIL).get_json() == []
    assert_consistent(app)


def test_archiving_an_inspection_reopened_after_return_does_not_count_it(api, completed, app, db):
    """Returned, taken back in progress on the device, then archived: still not completed."""
    phone, iid = completed
    _return(api, iid)
    phone.sync()
    phone.update("inspections", iid, status="in_progress")
    assert phone.sync()["conflicts"] == []
    _archive(api, iid)
    assert _completed_count(api) == 0 == _hand_count(db, set())
    assert api.get(f"/reports/failing-items?{PERIOD}", HQ_EMAIL).get_json() == []
    assert_consistent(app)


def test_archiving_completed_and_approved_inspections_keeps_counting_them(
    api, completed, env, device, app, db
):
    """Archive keeps what was done: completed and approved inspections still count."""
    phone, failed = completed
    approved = _complete(phone, env)
    assert api.post(f"/inspections/{approved}/approve", NORTH, json={}).status_code == 200
    before = api.get(COMPLIANCE, HQ_EMAIL).get_json()
    _archive(api, failed)
    _archive(api, approved)
    assert api.get(COMPLIANCE, HQ_EMAIL).get_json() == before
    assert _completed_count(api) == 2 == _hand_count(db, {failed, approved})
    failing = api.get(f"/reports/failing-items?{PERIOD}", HQ_EMAIL).get_json()
    assert {(r["item_key"], r["failures"]) for r in failing} == {("clean", 1), ("fridge", 1)}
    db.expire_all()
    assert all(db.get(Inspection, i).status == "archived" for i in (failed, approved))
    assert_consistent(app)


def test_a_returned_inspection_completed_again_counts_once(api, completed, app, db):
    """Rework then completion again: counted once, on its new completion."""
    phone, iid = completed
    _return(api, iid)
    phone.sync()
    fridge = next(r for r in phone.live("responses").values() if r["item_key"] == "fridge")
    phone.update("responses", fridge["id"], value="4")
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    assert _completed_count(api) == 1 == _hand_count(db, {iid})
    _archive(api, iid)
    assert _completed_count(api) == 1 == _hand_count(db, {iid})
    assert_consistent(app)


# --- finding 2: a return reopens the occurrence its inspection fulfilled -------------------


def test_returning_an_inspection_reopens_its_occurrence(api, env, device, db):
    """The occurrence goes back to upcoming (devices pull it), then done on completion again."""
    occ = _first_occurrence(db, daily_schedule(api, env, assignee_ids=[env["users"][ANA]]))
    phone = device(ANA)
    phone.sync()
    iid = _complete(phone, env, occ.id)
    assert _occurrence(db, occ.id).status == "done"
    rows = api.get(COMPLIANCE, HQ_EMAIL).get_json()
    assert (rows[0]["inspections_completed"], rows[0]["completion_rate"]) == (1, round(1 / 14, 3))

    _return(api, iid)
    reopened = _occurrence(db, occ.id)
    assert (reopened.status, reopened.inspection_id) == ("upcoming", None)
    rows = api.get(COMPLIANCE, HQ_EMAIL).get_json()
    assert (rows[0]["inspections_completed"], rows[0]["completion_rate"]) == (0, 0.0)
    phone.sync()
    assert phone.get("occurrences", occ.id)["status"] == "upcoming"
    trail = api.get(f"/inspections/{iid}/audit", NORTH).get_json()
    assert any(e["action"] == "reopen" and e["entity"] == "occurrence" for e in trail), trail

    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    again = _occurrence(db, occ.id)
    assert (again.status, again.inspection_id) == ("done", iid)
    rows = api.get(COMPLIANCE, HQ_EMAIL).get_json()
    assert (rows[0]["inspections_completed"], rows[0]["completion_rate"]) == (1, round(1 / 14, 3))


def test_returning_one_of_two_inspections_of_an_occurrence_keeps_it_done(api, env, device, db):
    """Another completed inspection for the same occurrence takes it over; returning one the
    occurrence does not name changes nothing."""
    occ = _first_occurrence(db, daily_schedule(api, env, assignee_ids=[env["users"][ANA]]))
    phone = device(ANA)
    phone.sync()
    first = _complete(phone, env, occ.id)
    second = _complete(phone, env, occ.id)
    assert _occurrence(db, occ.id).inspection_id == first
    _return(api, first)
    handed = _occurrence(db, occ.id)
    assert (handed.status, handed.inspection_id) == ("done", second)
    rows = api.get(COMPLIANCE, HQ_EMAIL).get_json()
    assert rows[0]["completion_rate"] == round(1 / 14, 3)

    phone.sync()
    phone.update("inspections", first, status="completed")
    assert phone.sync()["conflicts"] == []
    rev = _occurrence(db, occ.id).server_rev
    _return(api, first)  # the occurrence names the second one now: it stays as it is
    kept = _occurrence(db, occ.id)
    assert (kept.status, kept.inspection_id, kept.server_rev) == ("done", second, rev)
    _return(api, second)
    assert _occurrence(db, occ.id).status == "upcoming"


def test_returning_the_fulfilling_run_does_not_hand_the_occurrence_to_a_refused_one(
    api, env, device, db
):
    """Ben's run linked to Ana's occurrence was refused ("another inspector's"). When Ana's
    own run is returned for rework, the occurrence reopens: Ben's run does not take it."""
    users = env["users"]
    sid = daily_schedule(api, env, assignee_ids=[users[ANA], users[BEN]])
    first = db.query(Occurrence).filter_by(schedule_id=sid).order_by(Occurrence.due_at).first()
    slot = db.query(Occurrence).filter_by(schedule_id=sid, due_at=first.due_at).all()
    anas = next(o.id for o in slot if o.assignee_id == users[ANA])
    open_window(db, anas)

    def run(phone):
        iid = new_inspection(phone, env, occurrence_id=anas, mode="scheduled")
        answer(phone, iid, "clean", "yes")
        answer(phone, iid, "fridge", 3)
        phone.update("inspections", iid, status="completed")
        return iid, phone.sync()

    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    ben.sync()
    mine, _ = run(ana)
    _theirs, result = run(ben)
    assert any(
        c["column"] == "occurrence_id" and "another inspector" in c["detail"]
        for c in result["conflicts"]
    ), result["conflicts"]
    assert _occurrence(db, anas).inspection_id == mine
    _return(api, mine)
    occ = _occurrence(db, anas)
    assert (occ.status, occ.inspection_id) == ("upcoming", None)


def test_returning_the_fulfilling_run_does_not_hand_the_occurrence_to_an_early_one(
    api, env, device, db
):
    """A run completed before the occurrence's window opened was refused for it; returning
    the run that did fulfil it reopens the occurrence instead of handing it to the early one."""
    occ = _first_occurrence(db, daily_schedule(api, env, assignee_ids=[env["users"][ANA]]))
    phone = device(ANA)
    phone.sync()
    early = new_inspection(phone, env, occurrence_id=occ.id, mode="scheduled")
    answer(phone, early, "clean", "yes")
    answer(phone, early, "fridge", 3)
    opened = _occurrence(db, occ.id).window_start
    opened = opened if opened.tzinfo else opened.replace(tzinfo=dt.UTC)
    before_it = int((opened - dt.timedelta(days=1)).timestamp() * 1000)
    phone.update("inspections", early, status="completed", completed_at=before_it)
    result = phone.sync()
    assert any("window opens" in c["detail"] for c in result["conflicts"]), result["conflicts"]
    mine = _complete(phone, env, occ.id)
    assert _occurrence(db, occ.id).inspection_id == mine
    _return(api, mine)
    reopened = _occurrence(db, occ.id)
    assert (reopened.status, reopened.inspection_id) == ("upcoming", None)


def test_a_manager_does_not_review_an_inspection_they_ran(api, env, device):
    """Four eyes: the person who collected the evidence does not approve or return it."""
    phone = device(NORTH)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    for decision, body in (("approve", {}), ("return", {"comment": "redo"})):
        resp = api.post(f"/inspections/{iid}/{decision}", NORTH, json=body)
        assert resp.status_code == 403, resp.get_json()
        assert resp.get_json()["reason"] == "own_inspection"
    assert api.post(f"/inspections/{iid}/approve", HQ_EMAIL, json={}).status_code == 200


# --- data archived by the earlier release ------------------------------------------------


def test_the_0008_migration_stops_counting_what_was_archived_while_not_done(
    api, completed, env, app, db
):
    """Inspections archived by the release before the fix kept their completion time: the
    migration clears it where the audit trail says the inspection was not done when archived,
    and rebuilds the rollups; one archived while completed keeps counting."""
    from alembic import command

    from api.cli import alembic_config
    from tests.sync_env import write_inspections

    phone, returned = completed
    done = _complete(phone, env)
    _return(api, returned)
    _archive(api, returned)
    _archive(api, done)
    db.expire_all()
    kept = db.get(Inspection, done).completed_received_at
    assert kept is not None and db.get(Inspection, returned).completed_received_at is None
    # As the earlier release left it: the returned one archived with its completion time, and
    # counted in the rollups (written as the app writes, so they count it).
    write_inspections(app, [], {returned: {"completed_received_at": kept}})
    failing = f"/reports/failing-items?{PERIOD}"
    assert _completed_count(api) == 2 and api.get(failing, HQ_EMAIL).get_json() != []
    engine = app.extensions["db_engine"]
    cfg = alembic_config()
    for target in ("0007", "head"):  # 0008's downgrade changes no data
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "0007" else command.upgrade)(cfg, target)
    db.expire_all()
    assert db.get(Inspection, returned).completed_received_at is None
    assert db.get(Inspection, done).completed_received_at == kept
    assert _completed_count(api) == 1 == _hand_count(db, {done})
    assert api.get(failing, HQ_EMAIL).get_json() == []  # the passing one alone counts
    assert_consistent(app)
