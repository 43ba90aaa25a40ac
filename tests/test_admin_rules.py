"""HQ administration rules: sign-ins end with a password change or deactivation, the last HQ
stays, login limits per address and per account, duplicate assignees, closed sites."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from api.extensions import LOGIN_ADDRESS_FACTOR
from inspections import schedule_service
from store.models import Occurrence, Schedule, Site, User
from store.types import utcnow
from sync import pull
from sync.scope import scope_for
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.sync_env import answer, elsewhere, new_inspection

REFRESH = "/api/v1/auth/refresh"


def _refresh(api, token: str):
    return api.client.post(REFRESH, json={"refresh_token": token})


# --- sign-ins end with the password or the account -------------------------------------


def test_a_password_change_ends_the_users_refresh_tokens(api, demo_org):
    first = api.login(ANA)["refresh_token"]
    # Other changes keep the user signed in.
    assert api.patch(f"/users/{demo_org[ANA]}", HQ_EMAIL, json={"name": "Ana"}).status_code == 200
    kept = _refresh(api, first)
    assert kept.status_code == 200
    old = kept.get_json()["refresh_token"]
    changed = api.patch(
        f"/users/{demo_org[ANA]}", HQ_EMAIL, json={"password": "a-new-password-123"}
    )
    assert changed.status_code == 200
    resp = _refresh(api, old)
    assert resp.status_code == 401 and resp.get_json()["reason"] == "token_revoked"
    # The new password signs in, and its own refresh token works.
    fresh = api.login(ANA, "a-new-password-123")["refresh_token"]
    assert _refresh(api, fresh).status_code == 200


def test_a_deactivated_users_tokens_stay_dead_after_reactivation(api, demo_org):
    old = api.login(ANA)["refresh_token"]
    user = f"/users/{demo_org[ANA]}"
    assert api.patch(user, HQ_EMAIL, json={"active": False}).status_code == 200
    assert api.patch(user, HQ_EMAIL, json={"active": True}).status_code == 200
    resp = _refresh(api, old)
    assert resp.status_code == 401 and resp.get_json()["reason"] == "token_revoked"


# --- the organisation keeps an administrator --------------------------------------------


def test_the_last_active_hq_cannot_be_deactivated_or_demoted(api, demo_org, db):
    hq = f"/users/{demo_org[HQ_EMAIL]}"
    region = db.get(User, demo_org[NORTH]).region_id
    for change, field in (
        ({"active": False}, "active"),
        ({"role": "regional_manager", "region_id": region}, "role"),
    ):
        resp = api.patch(hq, HQ_EMAIL, json=change)
        assert resp.status_code == 409, resp.get_json()
        body = resp.get_json()
        assert body["reason"] == "last_hq" and "another HQ" in body["message"]
        assert field in body["errors"]
    assert db.get(User, demo_org[HQ_EMAIL]).active is True
    assert db.get(User, demo_org[HQ_EMAIL]).role == "hq"


def test_an_hq_can_step_down_once_another_is_active(api, demo_org):
    second = api.post(
        "/users",
        HQ_EMAIL,
        json={"email": "hq2@demo.example", "name": "HQ 2", "role": "hq", "password": "p" * 12},
    ).get_json()
    assert (
        api.patch(f"/users/{demo_org[HQ_EMAIL]}", HQ_EMAIL, json={"active": False}).status_code
        == 200
    )
    api.login("hq2@demo.example", "p" * 12)
    # Now the second one is the last.
    last = api.patch(f"/users/{second['id']}", "hq2@demo.example", json={"active": False})
    assert last.status_code == 409


# --- login limits -------------------------------------------------------------------------


def _fail(api, email: str, address: str = "127.0.0.1"):
    return api.client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "wrong-password"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_one_address_is_limited_across_many_accounts(api, demo_org, app):
    allowed = int(app.config["LOGIN_RATE_LIMIT"].split()[0]) * LOGIN_ADDRESS_FACTOR
    codes = [_fail(api, f"guess{i}@demo.example").status_code for i in range(allowed)]
    assert codes == [401] * allowed
    resp = _fail(api, "one-more@demo.example")
    assert resp.status_code == 429 and resp.get_json()["code"] == 429
    assert int(resp.headers["Retry-After"]) > 0
    # Another address is not held back by this one.
    assert _fail(api, "guess0@demo.example", "10.9.9.9").status_code == 401


def test_one_account_is_limited_across_many_addresses(api, demo_org, app):
    allowed = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    codes = [_fail(api, ANA, f"10.0.0.{i + 1}").status_code for i in range(allowed)]
    assert codes == [401] * allowed
    assert _fail(api, ANA, "10.0.1.1").status_code == 429
    assert _fail(api, BEN, "10.0.1.1").status_code == 401


# --- schedules ---------------------------------------------------------------------------


def _probe_template(api) -> str:
    templates = api.get("/templates?page_size=100", HQ_EMAIL).get_json()
    return next(t["id"] for t in templates if t["template_key"] == "sync_probe")


def _daily_at_the_hotel(api, env, assignees: list[str]):
    """HQ schedules the probe checklist daily at N-HOTEL; returns the answer."""
    made = api.post(
        "/schedules",
        HQ_EMAIL,
        json={
            "template_id": _probe_template(api),
            "site_id": env["sites"]["N-HOTEL"],
            "assignee_ids": assignees,
            "recurrence": {"freq": "daily", "times": ["08:00"]},
        },
    )
    assert made.status_code == 201, made.get_json()
    return made


def test_a_repeated_assignee_is_scheduled_once(api, env, db):
    ana = env["users"][ANA]
    made = _daily_at_the_hotel(api, env, [ana, ana])
    assert made.get_json()["assignee_ids"] == [ana]
    rows = db.scalars(select(Occurrence).where(Occurrence.schedule_id == made.get_json()["id"]))
    slots = [o.due_at for o in rows]
    assert slots and len(slots) == len(set(slots))


def test_a_deactivated_assignee_gets_no_new_occurrences(api, app, env, db):
    ana, ben = env["users"][ANA], env["users"][BEN]
    made = _daily_at_the_hotel(api, env, [ana, ben])
    assert api.patch(f"/users/{ana}", HQ_EMAIL, json={"active": False}).status_code == 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    with app.app_context():
        from api import db as api_db

        session = api_db.session()
        assert schedule_service.generate_all(session, later) > 0
        session.commit()
    db.expire_all()
    rows = db.scalars(select(Occurrence).where(Occurrence.schedule_id == made.get_json()["id"]))
    late = {o.assignee_id for o in rows if o.due_at > later}
    assert late == {ben}


# --- closed sites --------------------------------------------------------------------------


@pytest.fixture
def closed_hotel(api, env, device):
    """An inspection Ana completed and one in progress at N-HOTEL, then HQ closes the site."""
    phone = device(ANA)
    phone.sync()
    done = new_inspection(phone, env)
    answer(phone, done, "clean", "no")
    answer(phone, done, "fridge", 9)
    phone.update("inspections", done, status="completed", completed_at=1_795_000_000_000)
    open_one = new_inspection(phone, env)
    answer(phone, open_one, "clean", "yes")
    answer(phone, open_one, "fridge", 3)
    assert phone.sync()["conflicts"] == []
    site = env["sites"]["N-HOTEL"]
    assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    return {"phone": phone, "site": site, "done": done, "open": open_one}


def test_a_closed_site_is_out_of_the_inspectors_rest_scope(api, closed_hotel):
    site = closed_hotel["site"]
    for who in (ANA, NORTH):
        assert api.get(f"/sites/{site}", who).status_code == 404
        assert api.get(f"/inspections/{closed_hotel['done']}", who).status_code == 404
        actions = api.get("/actions?page_size=100", who).get_json()
        assert all(a["site_id"] != site for a in actions), who
        occurrences = api.get("/occurrences?page_size=500", who).get_json()
        assert all(o["site_id"] != site for o in occurrences), who
        schedules = api.get("/schedules?page_size=100", who).get_json()
        assert all(s["site_id"] != site for s in schedules), who
    completing = api.post(f"/inspections/{closed_hotel['open']}/complete", ANA)
    assert completing.status_code in (403, 404), completing.get_json()


def test_closing_a_site_stops_its_schedules(api, env, db, app):
    site = env["sites"]["N-HOTEL"]
    at_site = select(Schedule).where(Schedule.site_id == site)
    assert db.scalars(at_site).all() and all(s.active for s in db.scalars(at_site))
    assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    assert not any(s.active for s in db.scalars(at_site))
    future = select(Occurrence).where(
        Occurrence.site_id == site, Occurrence.deleted_at.is_(None), Occurrence.due_at > utcnow()
    )
    assert db.scalars(future).all() == []
    with app.app_context():
        from api import db as api_db

        schedule_service.generate_all(api_db.session(), utcnow() + dt.timedelta(days=30))
        api_db.commit()
    assert db.scalars(future).all() == []


def test_a_closed_site_still_counts_in_its_regions_history(env, db, api):
    site = env["sites"]["N-HOTEL"]
    assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    manager = db.get(User, env["users"][NORTH])
    scope = scope_for(db, manager)
    assert site not in scope.site_ids and site in scope.closed_site_ids
    history = select(Site.id).where(scope.history_clause(Site.id))
    assert site in set(db.scalars(history))
    assert site in pull.reach(scope)  # a pull still sends the closure


def test_a_closed_sites_records_leave_the_devices_with_it(env, device, api, db):
    """Closing a site sends its tombstone and, with it, deletions of its records: a device
    neither keeps inspections of a site it no longer has, nor gets them on a first sync (as
    REST no longer shows them). Paged; the deletions wait for the device's push, or here, with
    nothing to push, two syncs (tests/sync/test_lost_sites.py)."""
    ana, north = device(ANA, "ana", limit=2), device(NORTH, "north", limit=2)
    ana.sync()
    canteen = new_inspection(ana, env, site="N-CANTEEN")
    answer(ana, canteen, "clean", "no")
    answer(ana, canteen, "fridge", 9)
    ana.update("inspections", canteen, status="completed", completed_at=1_795_000_000_000)
    hotel = new_inspection(ana, env, site="N-HOTEL")
    assert ana.sync()["conflicts"] == []
    north.sync()
    ana.sync()
    site = env["sites"]["N-CANTEEN"]
    gone = {
        name: {rid for rid, rec in ana.live(name).items() if rec.get("inspection_id") == canteen}
        for name in ("responses", "actions")
    }
    gone["inspections"] = {canteen}
    assert len(gone["responses"]) == 2 and len(gone["actions"]) == 2
    assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    for dev in (ana, north):
        dev.sync()
        assert dev.get("sites", site) is None
        elsewhere(device, env)
        dev.sync()
        assert dev.get("inspections", canteen) is not None
        elsewhere(device, env)
        dev.sync()
        for name, ids in gone.items():
            assert not ids & dev.live(name).keys(), (dev.device_id, name)
        assert dev.get("inspections", hotel) is not None  # the other sites' records stay
    for email in (ANA, NORTH):
        fresh = device(email, f"fresh-{email}")
        fresh.sync()
        assert fresh.get("sites", site) is None and fresh.get("inspections", canteen) is None
        assert fresh.get("inspections", hotel) is not None
