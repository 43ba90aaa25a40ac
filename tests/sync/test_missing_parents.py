"""Pushed records naming a parent the server does not have, or another record's answer."""

# Refused and kept as conflicts holding the device's values: nothing joins an id someone may
# create later, and the device drops them on its next pull instead of pushing them again.

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from store.models import Action, Attachment, Conflict, Inspection, Response
from tests.media.conftest import jpeg
from tests.sync.device import random_id
from tests.sync_env import ANA, BEN, NORTH, SOUTH, answer, new_action, new_inspection, now_ms


def _photo(**links) -> dict:
    """A photo record's values naming these parents."""
    data = jpeg(40, 30)
    return {
        "kind": "photo",
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime": "image/jpeg",
        "byte_size": len(data),
        **links,
    }


def _conflict(db, record_id: str) -> Conflict:
    return db.execute(select(Conflict).where(Conflict.record_id == record_id)).scalar_one()


def _orphan(phone, env, table: str, ghost: str) -> str:
    """A record naming the unknown id `ghost` as its parent, next to a live inspection."""
    home = new_inspection(phone, env)
    if table == "responses":
        return answer(phone, ghost, "clean", "yes")
    if table == "actions":
        return new_action(phone, env, ghost)
    if table == "photo of an unknown inspection":
        return phone.create("attachments", **_photo(inspection_id=ghost))
    if table == "photo of an unknown action":
        return phone.create("attachments", **_photo(inspection_id=home, action_id=ghost))
    return phone.create("attachments", **_photo(action_id=ghost))  # a fix photo, nothing else


@pytest.mark.parametrize(
    "table",
    [
        "responses",
        "actions",
        "photo of an unknown inspection",
        "photo of an unknown action",
        "fix photo of an unknown action",
    ],
)
def test_a_record_naming_an_unknown_parent_is_refused_kept_and_dropped(env, device, db, table):
    phone = device(ANA)
    phone.sync()
    ghost = random_id()
    rid = _orphan(phone, env, table, ghost)
    name = "attachments" if "photo" in table else table

    pushed = phone.sync()

    assert [(c["kind"], c["id"]) for c in pushed["conflicts"]] == [("invalid_parent", rid)]
    assert "is not on the server" in pushed["conflicts"][0]["detail"]
    model = {"responses": Response, "actions": Action, "attachments": Attachment}[name]
    assert db.get(model, rid) is None
    kept = _conflict(db, rid)
    assert kept.table_name == name and ghost in kept.device_value.values()
    phone.sync()
    assert phone.get(name, rid) is None  # the device drops it...
    assert phone.sync() is None  # ...and has nothing left to push


def test_an_action_naming_an_unknown_inspection_is_kept_at_its_site(env, device, api, db):
    # Its own site places it: the site's manager sees what the device sent.
    phone = device(ANA)
    phone.sync()
    aid = new_action(phone, env, random_id(), title="Broken tap in 1203")
    phone.sync()
    listed = api.get("/conflicts?kind=invalid_parent", NORTH).get_json()
    assert [(c["record_id"], c["device_value"]["title"]) for c in listed] == [
        (aid, "Broken tap in 1203")
    ]
    assert api.get("/conflicts?kind=invalid_parent", SOUTH).get_json() == []


def test_children_of_a_refused_parent_share_its_refusal_and_its_site(env, device, db):
    # A new inspection at a site the pusher cannot see, with an answer and a photo: all three
    # are out of scope, kept at the inspection's site for its manager to act on.
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env, site="S-HOTEL")
    rid = answer(phone, iid, "clean", "no")
    att = phone.create("attachments", **_photo(inspection_id=iid, response_id=rid))

    pushed = phone.sync()

    assert {(c["kind"], c["id"]) for c in pushed["conflicts"]} == {
        ("out_of_scope", iid),
        ("out_of_scope", rid),
        ("out_of_scope", att),
    }
    south = env["sites"]["S-HOTEL"]
    assert {_conflict(db, r).site_id for r in (iid, rid, att)} == {south}
    assert _conflict(db, rid).detail.startswith("its inspection was refused")


def test_a_photo_of_a_refused_action_is_refused_with_it(env, device, db):
    phone = device(ANA)
    phone.sync()
    aid = new_action(phone, env, random_id())
    att = phone.create("attachments", **_photo(action_id=aid))

    pushed = phone.sync()

    assert [(c["kind"], c["id"]) for c in pushed["conflicts"]] == [
        ("invalid_parent", aid),
        ("invalid_parent", att),
    ]
    assert _conflict(db, att).detail == (
        "its corrective action was refused: its inspection is not on the server"
    )
    assert db.get(Attachment, att) is None


def test_parents_in_the_same_push_count_whatever_order_the_tables_come_in(env, device, client, db):
    # Children listed before their parents, next to an orphan: only the orphan is refused.
    phone = device(ANA)
    phone.sync()
    iid, rid, aid, att, orphan = (random_id() for _ in range(5))
    inspection = {
        "id": iid,
        "template_id": env["template"],
        "site_id": env["sites"]["N-HOTEL"],
        "status": "in_progress",
        "started_at": now_ms(),
    }
    action = {"id": aid, "inspection_id": iid, "response_id": rid, "title": "Mop", "status": "open"}
    created = {
        "attachments": [dict(_photo(inspection_id=iid, response_id=rid, action_id=aid), id=att)],
        "actions": [action, dict(action, id=orphan, inspection_id=random_id(), response_id=None)],
        "responses": [{"id": rid, "inspection_id": iid, "item_key": "clean", "value": '"no"'}],
        "inspections": [inspection],
    }
    body = {
        "changes": {t: {"created": c, "updated": [], "deleted": []} for t, c in created.items()},
        "last_pulled_at": phone.last_pulled_at,
    }
    resp = client.post("/api/v1/sync/push", json=body, headers=phone.headers())
    assert resp.status_code == 200, resp.get_json()
    assert [(c["kind"], c["id"]) for c in resp.get_json()["conflicts"]] == [
        ("invalid_parent", orphan)
    ]
    db.expire_all()
    assert db.get(Inspection, iid) is not None and db.get(Response, rid) is not None
    assert db.get(Action, aid).inspection_id == iid
    stored = db.get(Attachment, att)
    assert (stored.inspection_id, stored.response_id, stored.action_id) == (iid, rid, aid)


def test_a_refused_action_is_created_once_its_inspection_arrives(env, device, api, db):
    # Nothing the device sent is lost: once the inspection it named is on the server, the
    # manager takes the device's action; before that, only keeping the server's state closes it.
    phone = device(ANA)
    phone.sync()
    ghost = random_id()
    aid = new_action(phone, env, ghost)
    phone.sync()
    conflict = _conflict(db, aid)
    early = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert early.status_code == 422 and early.get_json()["reason"] == "not_resolvable"
    new_inspection(phone, env, id=ghost)
    assert phone.sync()["conflicts"] == []
    taken = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert taken.status_code == 200, taken.get_json()
    db.expire_all()
    assert db.get(Action, aid).inspection_id == ghost
    phone.sync()
    assert phone.get("actions", aid)["inspection_id"] == ghost


# --- the answer a photo or action names -----------------------------------------------------


def _two_inspections(device, env) -> tuple:
    """Ana's phone, and two synced inspections at N-HOTEL each with an answer (id, answer id)."""
    phone = device(ANA)
    phone.sync()
    first = new_inspection(phone, env)
    mine = answer(phone, first, "clean", "no")
    second = new_inspection(phone, env)
    theirs = answer(phone, second, "clean", "yes")
    assert phone.sync()["conflicts"] == []
    return phone, first, mine, second, theirs


def _kept_without_the_answer(phone, db, pushed: dict, aid: str, named: str | None) -> None:
    """An action naming an answer it may not have is kept without it (an invalid_value
    conflict holds the device's value); the device converges on the next pull."""
    got = [(c["kind"], c["id"], c["column"]) for c in pushed["conflicts"]]
    assert got == [("invalid_value", aid, "response_id")]
    assert _conflict(db, aid).device_value == named
    db.expire_all()
    assert db.get(Action, aid).response_id is None
    phone.sync()
    assert phone.get("actions", aid)["response_id"] is None


@pytest.mark.parametrize("table", ["attachments", "actions"])
@pytest.mark.parametrize("named", ["another inspection's", "unknown"])
def test_a_new_record_naming_an_answer_not_of_its_inspection_is_refused(
    env, device, db, table, named
):
    phone, first, _mine, _second, theirs = _two_inspections(device, env)
    target = theirs if named == "another inspection's" else random_id()
    if table == "attachments":
        rid = phone.create("attachments", **_photo(inspection_id=first, response_id=target))
    else:
        rid = new_action(phone, env, first, response_id=target)

    pushed = phone.sync()
    if table == "actions":
        _kept_without_the_answer(phone, db, pushed, rid, target)
        return

    assert [(c["kind"], c["id"]) for c in pushed["conflicts"]] == [("invalid_parent", rid)]
    detail = pushed["conflicts"][0]["detail"]
    assert detail == (
        "its answer belongs to another inspection"
        if named == "another inspection's"
        else "its answer is not on the server"
    )
    assert db.get(Attachment if table == "attachments" else Action, rid) is None
    assert _conflict(db, rid).device_value["response_id"] == target
    phone.sync()
    assert phone.get(table, rid) is None


def test_a_photo_cannot_name_an_answer_at_a_site_outside_scope(env, device, db):
    # Had it been stored, the deletion of that answer would have taken Ana's photo with it,
    # at a site its deleter may not see.
    ben = device(BEN)
    ben.sync()
    south = new_inspection(ben, env, site="S-HOTEL")
    theirs = answer(ben, south, "clean", "no")
    ben.sync()
    phone = device(ANA)
    phone.sync()
    mine = new_inspection(phone, env)
    att = phone.create("attachments", **_photo(inspection_id=mine, response_id=theirs))

    pushed = phone.sync()

    assert [(c["kind"], c["detail"]) for c in pushed["conflicts"]] == [
        ("out_of_scope", "its answer is outside your scope")
    ]
    assert db.get(Attachment, att) is None
    assert _conflict(db, att).site_id == env["sites"]["N-HOTEL"]


def test_a_photo_of_an_answer_deleted_meanwhile_is_refused_an_action_kept(env, device, db):
    # Deleting an answer takes its photos with it, not its corrective actions: a photo taken
    # offline for it is refused as a deleted record, an action raised for it is kept.
    phone, first, mine, _second, _theirs = _two_inspections(device, env)
    tab = device(ANA, "tab")
    tab.sync()
    tab.delete("responses", mine)
    tab.sync()
    att = phone.create("attachments", **_photo(inspection_id=first, response_id=mine))
    aid = new_action(phone, env, first, response_id=mine)

    pushed = phone.sync()

    assert [(c["kind"], c["id"], c["detail"]) for c in pushed["conflicts"]] == [
        (
            "deleted_record",
            att,
            "created on the device after its answer was deleted on the server",
        )
    ]
    assert db.get(Attachment, att) is None
    assert db.get(Action, aid).response_id == mine


@pytest.mark.parametrize("table", ["attachments", "actions"])
def test_a_stored_record_moves_only_to_an_answer_of_its_own_inspection(env, device, db, table):
    phone, first, mine, _second, theirs = _two_inspections(device, env)
    if table == "attachments":
        rid = phone.create("attachments", **_photo(inspection_id=first, response_id=mine))
    else:
        rid = new_action(phone, env, first, response_id=mine)
    phone.sync()
    other = answer(phone, first, "fridge", 3)  # another answer of its own inspection
    phone.update(table, rid, response_id=other)
    assert phone.sync()["conflicts"] == []
    phone.sync()

    extra = {"latitude": 31.2} if table == "attachments" else {"description": "Mop again"}
    phone.update(table, rid, response_id=theirs, **extra)
    pushed = phone.sync()

    assert [(c["kind"], c["column"]) for c in pushed["conflicts"]] == [
        ("invalid_value", "response_id")
    ]
    db.expire_all()
    model = Attachment if table == "attachments" else Action
    row = db.get(model, rid)
    assert row.response_id == other
    assert getattr(row, next(iter(extra))) == next(iter(extra.values()))  # the rest applied
    kept = _conflict(db, rid)
    assert (kept.server_value, kept.device_value) == (other, theirs)
    phone.sync()
    assert phone.get(table, rid)["response_id"] == other  # the device converged


def test_late_evidence_for_a_refused_new_answer_is_kept_without_it(env, device, db):
    # The new answer is refused (its inspection is completed); the photo taken for it is late
    # evidence and the action has its own lifecycle, so both stay in the inspection, no longer
    # naming an answer the server does not have.
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    assert phone.sync()["conflicts"] == []
    late = answer(phone, iid, "remark", "seen later")
    att = phone.create("attachments", **_photo(inspection_id=iid, response_id=late))
    aid = new_action(phone, env, iid, response_id=late)

    pushed = phone.sync()

    assert sorted((c["kind"], c["id"], c["column"] or "") for c in pushed["conflicts"]) == sorted(
        [
            ("locked", late, ""),
            ("invalid_value", att, "response_id"),
            ("invalid_value", aid, "response_id"),
        ]
    )
    db.expire_all()
    assert db.get(Response, late) is None
    photo = db.get(Attachment, att)
    assert (photo.inspection_id, photo.response_id) == (iid, None)
    assert db.get(Action, aid).response_id is None
    assert _conflict(db, att).device_value == late
    phone.sync()
    assert phone.get("responses", late) is None
    assert phone.get("attachments", att)["response_id"] is None
    assert phone.get("actions", aid)["response_id"] is None


@pytest.mark.parametrize("table", ["attachments", "actions"])
def test_a_record_naming_an_answer_but_no_inspection_is_refused(env, device, db, table):
    # A fix photo documents its action, and an action may stand alone, but neither may claim
    # an inspection's answer without being in that inspection.
    phone, _first, mine, _second, _theirs = _two_inspections(device, env)
    aid = new_action(phone, env, None)
    if table == "attachments":
        rid = phone.create("attachments", **_photo(action_id=aid, response_id=mine))
    else:
        rid = new_action(phone, env, None, response_id=mine)

    pushed = phone.sync()
    if table == "actions":
        _kept_without_the_answer(phone, db, pushed, rid, mine)
        return

    assert [(c["kind"], c["id"], c["detail"]) for c in pushed["conflicts"]] == [
        ("invalid_parent", rid, "its answer belongs to another inspection")
    ]
    assert db.get(Attachment if table == "attachments" else Action, rid) is None
