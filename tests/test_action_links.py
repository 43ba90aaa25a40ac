"""A hand-raised action links only to its own inspection's answer and to someone who works at
its site, raised over REST or pushed by a device."""

from __future__ import annotations

from store.models import Action, Conflict, Inspection
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH
from tests.sync_env import answer, new_action, new_inspection


def test_an_action_names_an_answer_of_its_own_inspection(api, env, device):
    phone = device(ANA)
    phone.sync()
    mine = new_inspection(phone, env)
    other = new_inspection(phone, env)
    rid = answer(phone, other, "clean", "no")
    phone.sync()
    wrong = {"inspection_id": mine, "response_id": rid, "title": "Mop"}
    resp = api.post("/actions", NORTH, json=wrong)
    assert resp.status_code == 422 and "response_id" in resp.get_json()["errors"]
    right = {"inspection_id": other, "response_id": rid, "title": "Mop"}
    assert api.post("/actions", NORTH, json=right).status_code == 201


def test_an_action_is_assigned_to_someone_who_works_at_its_site(api, env):
    canteen = env["sites"]["N-CANTEEN"]  # Ana's, not Ben's
    elsewhere = {"site_id": canteen, "title": "Fix", "assignee_id": env["users"][BEN]}
    resp = api.post("/actions", NORTH, json=elsewhere)
    assert resp.status_code == 422 and "assignee_id" in resp.get_json()["errors"]
    here = {"site_id": canteen, "title": "Fix", "assignee_id": env["users"][ANA]}
    assert api.post("/actions", NORTH, json=here).status_code == 201


# --- the same rules for an action a device pushes ---------------------------------------------
# Refused as a push refuses a value: the action is kept without the link, an invalid_value
# conflict keeps the device's value, and the device converges on its next pull (never a 422,
# which would leave it pushing the same record forever).


def _link_conflicts(out) -> list[tuple[str, str, str]]:
    return sorted((c["id"], c["kind"], c["column"]) for c in out["conflicts"])


def test_sync_refuses_an_action_assignee_rest_refuses(env, device, api, db):
    south_manager = env["users"][SOUTH]
    rest = api.post(
        "/actions",
        ANA,
        json={"site_id": env["sites"]["N-HOTEL"], "title": "x", "assignee_id": south_manager},
    )
    assert rest.status_code == 422  # REST: "no active user at this site"
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    aid = new_action(phone, env, iid, assignee_id=south_manager)
    ghost = new_action(phone, env, iid, assignee_id="nobody")  # an id nobody has
    out = phone.sync()
    assert _link_conflicts(out) == sorted(
        [(aid, "invalid_value", "assignee_id"), (ghost, "invalid_value", "assignee_id")]
    )
    db.expire_all()
    assert db.get(Action, aid).assignee_id is None  # the action is kept, without the assignee
    assert db.get(Action, ghost).assignee_id is None
    kept = db.query(Conflict).filter_by(record_id=aid).one()
    assert (kept.device_value, kept.server_value) == (south_manager, None)
    assert db.get(Inspection, iid).has_conflicts is True
    phone.sync()
    assert phone.get("actions", aid)["assignee_id"] is None  # the device converges


def test_sync_keeps_the_stored_assignee_when_a_device_changes_it_to_someone_elsewhere(
    env, device, api, db
):
    users = env["users"]
    phone = device(ANA, "phone")
    phone.sync()
    aid = new_action(phone, env, new_inspection(phone, env), assignee_id=users[BEN])
    assert phone.sync()["conflicts"] == []  # Ben works at N-HOTEL
    assert api.patch(f"/users/{users[BEN]}", HQ_EMAIL, json={"active": False}).status_code == 200
    phone.update("actions", aid, assignee_id=users[ANA], description="Ana does it")
    assert phone.sync()["conflicts"] == []  # Ana works there
    phone.update("actions", aid, assignee_id=users[BEN])  # no longer active
    assert _link_conflicts(phone.sync()) == [(aid, "invalid_value", "assignee_id")]
    db.expire_all()
    action = db.get(Action, aid)
    assert (action.assignee_id, action.description) == (users[ANA], "Ana does it")
    phone.sync()
    assert phone.get("actions", aid)["assignee_id"] == users[ANA]
    # A manager resolving the conflict cannot take the device's value either.
    conflict = db.query(Conflict).filter_by(record_id=aid, kind="invalid_value").one()
    taken = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert taken.status_code == 422 and taken.get_json()["reason"] == "invalid_value"


def test_sync_takes_the_assignees_rest_takes(env, device, db):
    users = env["users"]
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    # Who works at N-HOTEL: its inspectors, the region's manager, HQ.
    ids = [new_action(phone, env, iid, assignee_id=users[who]) for who in (BEN, NORTH, HQ_EMAIL)]
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert [db.get(Action, a).assignee_id for a in ids] == [
        users[BEN],
        users[NORTH],
        users[HQ_EMAIL],
    ]


def test_sync_refuses_an_answer_of_another_inspection(env, device, db):
    phone = device(ANA)
    phone.sync()
    mine = new_inspection(phone, env)
    other = new_inspection(phone, env)
    stored = answer(phone, other, "clean", "no")
    assert phone.sync()["conflicts"] == []
    fresh = answer(phone, other, "fridge", 9)  # in the same push as the action
    own = answer(phone, mine, "clean", "no")
    wrong = new_action(phone, env, mine, response_id=stored)
    also_wrong = new_action(phone, env, mine, response_id=fresh)
    unknown = new_action(phone, env, mine, response_id="no-such-answer")
    right = new_action(phone, env, mine, response_id=own)
    out = phone.sync()
    assert _link_conflicts(out) == sorted(
        (a, "invalid_value", "response_id") for a in (wrong, also_wrong, unknown)
    )
    db.expire_all()
    assert [db.get(Action, a).response_id for a in (wrong, also_wrong, unknown, right)] == [
        None,
        None,
        None,
        own,
    ]


def test_checking_a_push_s_action_links_costs_no_query_per_action(app, env, device):
    """The answers and assignees of a push's actions are looked up together."""
    from sqlalchemy import event

    users = env["users"]
    engine = app.extensions["db_engine"]
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "no")
    phone.sync()

    def selects(count: int) -> int:
        for n in range(count):
            # Some good links and some bad, each bad one another id.
            who = users[(ANA, BEN, NORTH, SOUTH)[n]] if n < 4 else f"nobody-{count}-{n}"
            answered = rid if n % 2 else f"no-answer-{count}-{n}"
            new_action(phone, env, iid, response_id=answered, assignee_id=who)
        cursor = phone.pull()
        seen: list[str] = []

        def listener(_conn, _cursor, statement, *_rest):
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", listener)
        try:
            phone.push(cursor)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        phone.last_pulled_at = cursor
        return len(seen)

    assert selects(4) == selects(16)
