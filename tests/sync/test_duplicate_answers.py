"""Two answers to one item: the most recently received one is scored, and stays scored until a
device sends another (sync-protocol.md, Push step 8)."""

from __future__ import annotations

from store.models import Action, Inspection, Response
from tests.sync_env import ANA, NORTH, answer, new_inspection, now_ms


def test_the_newest_duplicate_answer_stays_scored_on_later_pushes(env, device, db):
    phone, tab = device(ANA, "phone"), device(ANA, "tab")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    phone.sync()
    tab.sync()
    stale = answer(tab, iid, "fridge", 9)  # the tablet's reading: a critical failure
    tab.sync()
    newest = answer(phone, iid, "fridge", 3)  # received later: this one is scored
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["duplicate_response"]
    db.expire_all()
    assert db.get(Inspection, iid).critical_failed is False
    assert db.get(Response, newest).item_score == 1.0

    # A later push that touches neither answer: the completion.
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    phone.sync()
    db.expire_all()
    assert db.get(Inspection, iid).critical_failed is False, "the older reading is scored now"
    assert db.query(Action).filter_by(inspection_id=iid).count() == 0
    assert db.get(Response, stale).item_score is None
    assert db.get(Response, newest).item_score == 1.0


def test_detail_shows_the_scored_duplicate_answer(env, device, api, db):
    """The reviewer's view (and the PDF built from it) shows the answer the score used: on
    PostgreSQL the stale answer, whose score the server cleared, has the higher rev."""
    phone, tab = device(ANA, "phone"), device(ANA, "tab")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    phone.sync()
    tab.sync()
    stale = answer(tab, iid, "fridge", 9)
    tab.sync()
    newest = answer(phone, iid, "fridge", 3)
    phone.sync()
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    phone.sync()
    db.expire_all()
    assert db.get(Response, newest).item_score == 1.0
    assert db.get(Inspection, iid).critical_failed is False
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    fridge = next(i for i in view["items"] if i["key"] == "fridge")
    # 3 °C, passed: not the stale 9 °C reading the server set aside.
    assert (fridge["response_id"], fridge["answer"]) == (newest, 3), (stale, fridge)
    assert (fridge["failed"], fridge["item_score"]) == (False, 1.0)


def test_missing_evidence_follows_the_scored_duplicate_answer(env, device, api, db):
    """A photo is asked for only when the floor fails: the stale "no" the server set aside asks
    for none, as media_complete (computed from the scored "yes") says."""
    phone, tab = device(ANA, "phone"), device(ANA, "tab")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "fridge", 3)
    phone.sync()
    tab.sync()
    answer(tab, iid, "clean", "no")
    tab.sync()
    newest = answer(phone, iid, "clean", "yes")
    phone.sync()
    db.expire_all()
    assert db.get(Inspection, iid).media_complete is True
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    clean = next(i for i in view["items"] if i["key"] == "clean")
    assert (clean["response_id"], clean["answer"], clean["failed"]) == (newest, "yes", False)
    assert view["missing_evidence"] == []
