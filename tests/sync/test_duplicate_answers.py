"""Two answers to one item: the most recently received one is scored, and stays scored until a
device sends another (sync-protocol.md, Push step 8)."""

from __future__ import annotations

from store.models import Action, Inspection, Response
from tests.sync_env import ANA, answer, new_inspection, now_ms


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
