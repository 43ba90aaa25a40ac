"""A corrective action follows one set of rules whichever way it comes: raised over REST or on
a device, changed over REST or by a push (domain.md: corrective actions; people and scope)."""

from __future__ import annotations

import copy

from store.models import Action
from tests.conftest import ANA, BEN
from tests.sync_env import completed_with_action, new_action, new_inspection, now_ms

HOURS_48 = 48 * 3600 * 1000


# --- default due times ----------------------------------------------------------------------


def test_sync_raised_action_without_due_gets_the_default_due_like_rest(env, device, api, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    aid = new_action(phone, env, iid, priority="high")  # no due_at, as REST allows
    sent = now_ms()
    assert phone.sync()["conflicts"] == []
    received = now_ms()
    rest = api.post(
        "/actions", ANA, json={"site_id": env["sites"]["N-HOTEL"], "title": "x", "priority": "high"}
    )
    assert rest.status_code == 201
    assert rest.get_json()["due_at"] is not None  # REST: now + 48 h
    db.expire_all()
    # domain.md: default due times (high 48 h), from when the server received it, so the
    # action can fall overdue.
    due = db.get(Action, aid).due_at
    assert sent + HOURS_48 <= due <= received + HOURS_48
    phone.sync()
    assert phone.get("actions", aid)["due_at"] == due  # the device learns its due time


def test_a_due_time_the_device_gives_is_kept(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    due = now_ms() + 3600 * 1000
    aid = new_action(phone, env, new_inspection(phone, env), priority="low", due_at=due)
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).due_at == due


def test_a_retried_push_of_an_action_raised_without_due_keeps_its_default_due(env, device, db):
    """The push's answer is lost: WatermelonDB pushes the action again as created, due_at null
    (its raw record carries every column); the server has it now, so the null came as an edit
    and wiped the default due the first push gave it."""
    phone = device(ANA, "phone")
    phone.sync()
    aid = new_action(phone, env, None, title="Loose handrail", due_at=None)
    phone.last_pulled_at = phone.pull()
    unsent = copy.deepcopy(phone.db)
    phone.push(phone.last_pulled_at)  # stored with the default due; the answer is lost
    db.expire_all()
    due = db.get(Action, aid).due_at
    assert due is not None
    phone.db = unsent  # the device still holds the action as created, and pushes it again
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).due_at == due
    phone.sync()
    assert phone.get("actions", aid)["due_at"] == due  # the device learns it


def test_a_device_cannot_clear_an_actions_due_time(env, device, db):
    """REST gives every action a due time and clears none: a device's null keeps the stored one,
    and the device gets it back."""
    phone = device(ANA, "phone")
    phone.sync()
    due = now_ms() + 3600 * 1000
    aid = new_action(phone, env, None, due_at=due)
    phone.sync()
    phone.update("actions", aid, due_at=None, description="no rush")
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert (db.get(Action, aid).due_at, db.get(Action, aid).description) == (due, "no rush")
    phone.sync()
    assert phone.get("actions", aid)["due_at"] == due


# --- who may change an action: the inspectors of its site -----------------------------------


def test_an_inspector_changes_over_sync_the_actions_rest_lets_them_change(env, device, api, db):
    """Ben works at N-HOTEL; Ana's inspection there opened an action. REST lets Ben move it
    (domain.md: inspectors may change the actions of their sites); his phone's edit of the
    same action is taken too (it was refused as out_of_scope: "the inspection belongs to
    another inspector")."""
    _phone, _iid, aid = completed_with_action(env, device, db)
    moved = api.post(f"/actions/{aid}/transition", BEN, json={"status": "in_progress"})
    assert moved.status_code == 200  # REST: allowed
    ben = device(BEN, "ben-phone")
    ben.sync()
    ben.update("actions", aid, description="Ben: re-cleaned the floor")
    out = ben.sync()
    assert out["conflicts"] == [], out["conflicts"]
    db.expire_all()
    assert db.get(Action, aid).description == "Ben: re-cleaned the floor"


def test_an_inspector_raises_over_sync_an_action_on_a_colleagues_inspection(env, device, api, db):
    """REST lets Ben raise an action on Ana's inspection at his site; so does his phone. The
    inspection itself stays Ana's to change."""
    ana = device(ANA, "ana")
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    rest = api.post("/actions", BEN, json={"inspection_id": iid, "title": "Mop the hall"})
    assert rest.status_code == 201, rest.get_json()
    ben = device(BEN, "ben")
    ben.sync()
    aid = new_action(ben, env, iid, title="Broken lamp")
    ben.update("inspections", iid, notes="Ben was here")
    out = ben.sync()
    assert [(c["table"], c["kind"]) for c in out["conflicts"]] == [("inspections", "out_of_scope")]
    db.expire_all()
    assert db.get(Action, aid).inspection_id == iid
    assert db.get(Action, aid).created_by == env["users"][BEN]


def test_an_inspector_deletes_over_sync_only_the_actions_of_their_own_inspections(env, device, db):
    """Changing a colleague's action is allowed, deleting it is not: its deletion takes its
    photos, which may be the evidence of the colleague's inspection (REST deletes no action).
    Ben's deletion of the action Ana raised on her inspection is kept as a conflict and his
    phone gets the action back; a site-level action goes only with whoever raised it."""
    ana = device(ANA, "ana")
    ana.sync()
    aid = new_action(ana, env, new_inspection(ana, env))
    site_level = new_action(ana, env, None, title="Ana's, at the site")
    assert ana.sync()["conflicts"] == []
    ben = device(BEN, "ben")
    ben.sync()
    own = new_action(ben, env, None, title="Ben's, at the site")
    ben.sync()
    for deleted in (aid, site_level, own):
        ben.delete("actions", deleted)
    out = ben.sync()
    assert sorted((c["id"], c["kind"]) for c in out["conflicts"]) == sorted(
        [(aid, "out_of_scope"), (site_level, "out_of_scope")]
    )
    db.expire_all()
    assert db.get(Action, aid).deleted_at is None
    assert db.get(Action, site_level).deleted_at is None
    assert db.get(Action, own).deleted_at is not None
    ben.sync()
    assert ben.get("actions", aid) is not None and ben.get("actions", site_level) is not None
    ana.delete("actions", aid)  # hers to delete
    assert ana.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).deleted_at is not None
