"""A push whose response is lost is sent again after the next pull (WatermelonDB keeps the
records dirty): the retry changes nothing, so it records nothing."""

from __future__ import annotations

import copy

from store.models import Conflict, Inspection
from tests.sync_env import ANA, answer, new_inspection, now_ms


def _sync_losing_the_push_response(dev) -> None:
    cursor = dev.pull()
    dev.last_pulled_at = cursor
    dirty = copy.deepcopy(dev.db)
    dev.push(cursor)  # applied on the server...
    dev.db = dirty  # ...but the answer never reached the phone: it is still dirty


def test_a_retried_completing_push_records_no_conflicts(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.sync()
    phone.sync()
    phone.update("responses", rid, note="checked twice")
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    _sync_losing_the_push_response(phone)
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"

    result = phone.sync()  # the retry: same values as the server already holds

    db.expire_all()
    assert result["conflicts"] == []
    assert db.query(Conflict).count() == 0
    assert db.get(Inspection, iid).has_conflicts is False
