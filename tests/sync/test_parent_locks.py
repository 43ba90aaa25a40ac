"""A push takes its records' inspections' row locks before deciding anything from their
status (PostgreSQL): a change to a child of an inspection being completed at the same moment
waits for that completion and is then judged by it, instead of slipping in beside it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text, update

from store.models import Action, Inspection, Response
from tests.conftest import TEST_DATABASE_URL
from tests.sync_env import ANA, answer, new_action, new_inspection

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="SQLite writers take the one write lock at BEGIN: they never overlap",
)


def _waits_for_a_lock(engine, thread: threading.Thread) -> bool:
    """True once some backend waits for a row lock; False if the thread ends first."""
    deadline = time.monotonic() + 20
    with engine.connect() as watcher:
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = watcher.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting.scalar_one():
                return True
            watcher.rollback()
            time.sleep(0.02)
    return False


def _pushed_while_completing(app, device, iid: str, change) -> tuple[bool, dict]:
    """A second device makes `change` offline and syncs while another writer holds the
    inspection's row and completes it; returns (the push waited, its response)."""
    tab = device(ANA, "tab")
    tab.sync()
    change(tab)
    engine = app.extensions["db_engine"]
    result: dict = {}
    with engine.connect() as completion:
        completion.execute(select(Inspection.id).where(Inspection.id == iid).with_for_update())
        thread = threading.Thread(target=lambda: result.update(tab.sync() or {}))
        thread.start()
        waited = _waits_for_a_lock(engine, thread)
        completion.execute(
            update(Inspection).where(Inspection.id == iid).values(status="completed")
        )
        completion.commit()
    thread.join(60)
    return waited, result


def test_deleting_an_action_waits_for_a_completion_in_flight(app, env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    aid = new_action(phone, env, iid)
    assert phone.sync()["conflicts"] == []

    waited, result = _pushed_while_completing(
        app, device, iid, lambda tab: tab.delete("actions", aid)
    )
    assert waited, "the push decided without waiting for its inspection's lock"
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("locked", aid)]
    db.expire_all()
    assert db.get(Action, aid).deleted_at is None


def test_an_answer_waits_for_a_completion_in_flight(app, env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "yes")
    assert phone.sync()["conflicts"] == []

    waited, result = _pushed_while_completing(
        app, device, iid, lambda tab: tab.update("responses", rid, value='"no"')
    )
    assert waited, "the push decided without waiting for its inspection's lock"
    assert [(c["kind"], c["id"]) for c in result["conflicts"]] == [("locked", rid)]
    db.expire_all()
    assert db.get(Response, rid).value == '"yes"'
