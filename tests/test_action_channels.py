"""A corrective action follows one set of rules whichever way it comes: raised over REST or on
a device, changed over REST or by a push (domain.md: corrective actions; people and scope)."""

from __future__ import annotations

from store.models import Action
from tests.conftest import ANA
from tests.sync_env import new_action, new_inspection, now_ms

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
