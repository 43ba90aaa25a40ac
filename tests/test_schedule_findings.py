"""Schedules and occurrences: daylight-saving edges, the daily top-up, what inspectors list,
and the occurrences of people who can no longer do them (reviewer A's findings)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from api import db as api_db
from inspections import schedule_service, schedules
from store.models import Occurrence, Schedule, SyncCounter, Template
from store.types import utcnow
from sync.scope import Scope
from tests.conftest import ANA, BEN, HQ_EMAIL
from tests.sync_env import daily_schedule

UTC = dt.UTC
HQ = Scope(user_id="hq", role="hq", region_id=None, site_ids=None)
NEW_YORK = "America/New_York"
# New York springs forward on 8 March 2026 (02:00-03:00 local does not exist) and falls
# back on 1 November 2026 (01:00-02:00 local happens twice).
SPRING_FORWARD = dt.date(2026, 3, 8)
FALL_BACK = dt.date(2026, 11, 1)


def _slots(times: list[str], day: dt.date) -> list[schedules.Slot]:
    """The daily slots of `times` in New York from noon UTC the day before to noon the day after."""
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return schedules.slots(
        {"freq": "daily", "times": times},
        NEW_YORK,
        noon - dt.timedelta(days=1),
        noon + dt.timedelta(days=1),
        dt.timedelta(0),
        dt.timedelta(hours=1),
    )


def _probe_template_id(db) -> str:
    return db.scalars(select(Template.id).where(Template.template_key == "sync_probe")).one()


def _new_york_schedule(session, db, env, now: dt.datetime) -> Schedule:
    """Ana's daily 02:00 and 03:00 checks at N-HOTEL on New York time."""
    body = {
        "template_id": _probe_template_id(db),
        "site_id": env["sites"]["N-HOTEL"],
        "assignee_ids": [env["users"][ANA]],
        "recurrence": {"freq": "daily", "times": ["02:00", "03:00"]},
        "timezone": NEW_YORK,
    }
    return schedule_service.create(session, HQ, body, now=now)


# --- 1. daylight saving --------------------------------------------------------------------


def test_two_local_times_that_meet_in_a_dst_gap_give_one_slot():
    # 02:00 does not exist on spring-forward day and lands on 03:00's instant: one slot.
    got = [s.due_at for s in _slots(["02:00", "03:00"], SPRING_FORWARD)]
    assert len(got) == len(set(got)), got
    assert dt.datetime(2026, 3, 8, 7, tzinfo=UTC) in got  # 03:00 EDT


def test_a_local_time_that_happens_twice_gives_one_slot_at_its_first_instant():
    got = [s.due_at for s in _slots(["01:30"], FALL_BACK)]
    # 1 November: 01:30 EDT (UTC-4) only, not also 01:30 EST an hour later; 2 November: EST.
    assert got == [
        dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        dt.datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]


def test_creating_a_schedule_whose_times_meet_in_a_dst_gap_is_not_a_500(api, env, db, app):
    from api import db as api_db

    with app.app_context():
        made = _new_york_schedule(api_db.session(), db, env, dt.datetime(2026, 3, 1, tzinfo=UTC))
        api_db.commit()
        schedule_id = made.id
    rows = db.scalars(select(Occurrence).where(Occurrence.schedule_id == schedule_id)).all()
    assert len(rows) == len({(o.assignee_id, o.due_at) for o in rows}) == 2 * 14 - 1


def test_the_daily_top_up_crosses_a_dst_gap(api, env, db, app):
    from api import db as api_db

    with app.app_context():
        session = api_db.session()
        # Created while 8 March is beyond the horizon; the cron a month later reaches it.
        _new_york_schedule(session, db, env, dt.datetime(2026, 2, 1, tzinfo=UTC))
        api_db.commit()
        made = schedule_service.generate_all(session, now=dt.datetime(2026, 3, 1, tzinfo=UTC))
        api_db.commit()
    assert made > 0


def test_one_failing_schedule_does_not_stop_the_daily_top_up_of_the_others(
    api, env, db, app, monkeypatch
):
    from api import db as api_db

    with app.app_context():
        session = api_db.session()
        broken = _new_york_schedule(session, db, env, utcnow()).id
        api_db.commit()
        real = schedules.slots

        def slots(recurrence, timezone, *args):
            # A row the database refuses (due_at NOT NULL), for the New York schedule only:
            # the failure is in the database, so only a savepoint can contain it.
            out = real(recurrence, timezone, *args)
            if timezone == NEW_YORK:
                return [schedules.Slot(s.window_start, None, s.miss_at) for s in out]
            return out

        monkeypatch.setattr(schedules, "slots", slots)
        later = utcnow() + dt.timedelta(days=30)  # beyond every schedule's first horizon
        assert schedule_service.generate_all(session, now=later) > 0
        api_db.commit()
    others = select(Occurrence).where(
        Occurrence.schedule_id != broken, Occurrence.due_at >= later + dt.timedelta(days=13)
    )
    assert db.scalars(others).all()  # the demo schedules were topped up...
    assert db.get(Schedule, broken).generated_until < later  # ...the broken one was not...
    # ...and the rows kept around the rolled-back savepoint got revs of their own (final,
    # distinct, within the counter), so devices pull each of them exactly once.
    revs = db.scalars(select(Occurrence.server_rev)).all()
    top = db.scalars(select(SyncCounter.value)).one()
    assert min(revs) > 0 and max(revs) <= top and len(set(revs)) == len(revs)


# --- 2. what an inspector lists ------------------------------------------------------------


def test_an_inspector_lists_over_rest_the_occurrences_sync_gives_them(api, env, device):
    # HQ schedules a daily check at N-HOTEL for whoever is on duty (no named assignee); the
    # demo's room-status checks there are Ana's and Ben's.
    daily_schedule(api, env)
    phone = device(ANA)
    phone.sync()
    on_phone = {o["id"]: o["assignee_id"] for o in phone.live("occurrences").values()}
    assert None in on_phone.values() and env["users"][BEN] in on_phone.values()
    rest = api.get("/occurrences?page_size=500", ANA).get_json()
    assert {o["id"] for o in rest} == set(on_phone)


# --- 3. people who can no longer do them ---------------------------------------------------


def _live_future(db, user_id: str, site_id: str | None = None) -> list[Occurrence]:
    stmt = select(Occurrence).where(
        Occurrence.assignee_id == user_id,
        Occurrence.deleted_at.is_(None),
        Occurrence.due_at > utcnow(),
    )
    if site_id:
        stmt = stmt.where(Occurrence.site_id == site_id)
    return db.scalars(stmt).all()


def _an_overdue_one(db, schedule_id: str, user_id: str) -> str:
    """Move one of the user's occurrences into the past, where it stays as history."""
    occ = db.scalars(
        select(Occurrence).where(
            Occurrence.schedule_id == schedule_id, Occurrence.assignee_id == user_id
        )
    ).first()
    occ.due_at = utcnow() - dt.timedelta(hours=1)
    occ.window_start = occ.due_at - dt.timedelta(hours=1)
    occ.miss_at = occ.due_at + dt.timedelta(hours=2)
    db.commit()
    return occ.id


def test_revoking_an_inspector_withdraws_their_future_occurrences_at_that_site(api, env, db):
    ana, ben, hotel = env["users"][ANA], env["users"][BEN], env["sites"]["N-HOTEL"]
    sched = daily_schedule(api, env, assignee_ids=[ana, ben])
    past = _an_overdue_one(db, sched, ana)
    elsewhere = len(_live_future(db, ana)) - len(_live_future(db, ana, hotel))
    assert elsewhere > 0  # the demo's N-CANTEEN checks
    assignment = next(
        a
        for a in api.get(f"/assignments?user_id={ana}&page_size=100", HQ_EMAIL).get_json()
        if a["site_id"] == hotel
    )
    assert api.delete(f"/assignments/{assignment['id']}", HQ_EMAIL).status_code in (200, 204)
    db.expire_all()
    assert _live_future(db, ana, hotel) == []  # nobody could do them; they would count missed
    assert len(_live_future(db, ana)) == elsewhere  # her other site keeps its own
    assert _live_future(db, ben, hotel)  # her colleague's stay
    assert db.get(Occurrence, past).deleted_at is None  # the past is history
    # The site given back: her withdrawn slots there come back at once (the top-up could not
    # make them anew), and her device gets them on its next pull.
    back = api.post("/assignments", HQ_EMAIL, json={"user_id": ana, "site_id": hotel})
    assert back.status_code in (200, 201), back.get_json()
    db.expire_all()
    assert {o.id for o in _live_future(db, ana, hotel) if o.schedule_id == sched}
    assert len(_live_future(db, ana)) - len(_live_future(db, ana, hotel)) == elsewhere


def test_deactivating_a_user_withdraws_their_future_occurrences_everywhere(api, env, db):
    ana = env["users"][ANA]
    sched = daily_schedule(api, env, assignee_ids=[ana])
    past = _an_overdue_one(db, sched, ana)
    assert _live_future(db, ana)
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": False}).status_code == 200
    db.expire_all()
    withdrawn = {o.id for o in db.query(Occurrence).filter(Occurrence.assignee_id == ana)}
    assert _live_future(db, ana) == []
    assert db.get(Occurrence, past).deleted_at is None
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": True}).status_code == 200
    db.expire_all()
    restored = _live_future(db, ana)
    # The withdrawn rows came back (the slot the test moved into the past is made anew), and
    # no slot twice.
    assert [o.schedule_id for o in restored if o.id not in withdrawn] == [sched]
    slots = [(o.schedule_id, o.due_at) for o in restored]
    assert restored and len(slots) == len(set(slots))


def test_a_site_given_back_brings_the_slots_topped_up_meanwhile(api, app, env, db):
    """Slots the daily top-up made while Ana was off the site were made for Ben only: given the
    site back, she gets hers too, up to where the schedule is generated (the top-up then went
    on from there, so they stayed missing for good)."""
    ana, ben, hotel = env["users"][ANA], env["users"][BEN], env["sites"]["N-HOTEL"]
    sched = daily_schedule(api, env, assignee_ids=[ana, ben])
    assignment = next(
        a
        for a in api.get(f"/assignments?user_id={ana}&page_size=100", HQ_EMAIL).get_json()
        if a["site_id"] == hotel
    )
    assert api.delete(f"/assignments/{assignment['id']}", HQ_EMAIL).status_code in (200, 204)
    with app.app_context():
        schedule_service.generate_all(api_db.session(), utcnow() + dt.timedelta(days=10))
        api_db.commit()
    back = api.post("/assignments", HQ_EMAIL, json={"user_id": ana, "site_id": hotel})
    assert back.status_code in (200, 201), back.get_json()
    db.expire_all()

    def slots(user):
        return sorted(o.due_at for o in _live_future(db, user, hotel) if o.schedule_id == sched)

    assert len(slots(ben)) > 14  # the top-up reached past the first two weeks
    assert slots(ana) == slots(ben)


@pytest.mark.parametrize("change", [{"name": "Ana L."}, {"active": True}])
def test_other_changes_to_an_active_user_keep_their_occurrences(api, env, db, change):
    ana = env["users"][ANA]
    before = len(_live_future(db, ana))
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json=change).status_code == 200
    db.expire_all()
    assert len(_live_future(db, ana)) == before > 0


def test_reactivating_brings_back_nothing_of_a_stopped_schedule(api, env, db):
    ana = env["users"][ANA]
    sched = daily_schedule(api, env, assignee_ids=[ana])
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": False}).status_code == 200
    assert api.delete(f"/schedules/{sched}", HQ_EMAIL).status_code in (200, 204)
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": True}).status_code == 200
    db.expire_all()
    assert _live_future(db, ana)  # the demo's other schedules come back
    assert not [o for o in _live_future(db, ana) if o.schedule_id == sched]


def test_restoring_occurrences_costs_no_query_per_occurrence(app, api, env):
    """Reactivation restores a person's slots with a fixed number of reads, however many (the
    ORM still writes each restored row: SQLite's driver cannot batch checked UPDATEs)."""
    from sqlalchemy import event

    ana = env["users"][ANA]

    def queries_to_reactivate() -> int:
        assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": False}).status_code == 200
        seen: list[str] = []
        engine = app.extensions["db_engine"]

        def listener(_conn, _cursor, statement, *_rest):
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": True}).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(seen)

    daily_schedule(api, env, assignee_ids=[ana])
    few = queries_to_reactivate()
    for _ in range(3):  # three more daily schedules: about 42 more slots to restore
        daily_schedule(api, env, assignee_ids=[ana])
    assert queries_to_reactivate() - few < 10
