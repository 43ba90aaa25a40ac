"""Rev bookkeeping around a transaction, on either database."""

from __future__ import annotations

from sqlalchemy import select

from store.models import Inspection, Response, Site, SyncCounter
from sync import revs
from tests.sync_env import ANA, answer, new_inspection


def test_a_rolled_back_transaction_leaves_no_revs_to_stamp(app, db):
    session = app.extensions["db_sessions"]()
    try:
        before = session.execute(select(SyncCounter.value)).scalar_one()
        revs.next_pending(session, Response.__table__, 5)
        session.rollback()
        assert revs.stamp(session) is None
        session.commit()
    finally:
        session.close()
    assert db.execute(select(SyncCounter.value)).scalar_one() == before


def test_a_push_answers_the_top_rev_of_the_rows_it_wrote(env, device, db):
    phone = device(ANA)
    cursor = phone.pull()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 4)
    result = phone.push(cursor)
    counter = db.execute(select(SyncCounter.value)).scalar_one()
    assert result["timestamp"] == counter
    written = [
        *db.execute(select(Inspection.server_rev).where(Inspection.id == iid)).scalars(),
        *db.execute(select(Response.server_rev).where(Response.inspection_id == iid)).scalars(),
    ]
    assert len(written) == 3 and all(cursor < rev <= counter for rev in written)


def test_a_rolled_back_savepoint_keeps_the_revs_of_rows_written_before_it(app, db, env):
    session = app.extensions["db_sessions"]()
    try:
        before = session.execute(select(SyncCounter.value)).scalar_one()
        kept = session.get(Site, env["sites"]["N-HOTEL"])
        kept.name = "Written before the savepoint"
        session.flush()
        try:
            with session.begin_nested():
                lost = session.get(Site, env["sites"]["S-HOTEL"])
                lost.name = "Written inside it"
                session.flush()
                raise RuntimeError("the savepoint's work fails")
        except RuntimeError:
            pass
        revs.stamp(session)
        session.commit()
    finally:
        session.close()
    db.expire_all()
    counter = db.execute(select(SyncCounter.value)).scalar_one()
    site = db.get(Site, env["sites"]["N-HOTEL"])
    assert site.name == "Written before the savepoint"
    assert before < site.server_rev <= counter
    assert db.get(Site, env["sites"]["S-HOTEL"]).name != "Written inside it"
