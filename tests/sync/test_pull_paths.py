"""On PostgreSQL a pull is one statement; it must answer exactly what the generic path does."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import text

from api import db as api_db
from store.errors import Unauthorized
from store.models import DeviceState, User
from sync import holds, pull, pull_pg, revs
from sync.dumps import Dump, FreshCursor, dump_text
from sync.scope import scope_for
from sync.tables import TABLES
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, TEST_DATABASE_URL
from tests.sync_env import answer, elsewhere, new_inspection, photo_record

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="the one-statement pull is PostgreSQL's; SQLite always takes the generic path",
)


def _normal(result: dict) -> dict:
    """The answer as a device parses it, each table's records in id order."""
    parsed = orjson.loads(orjson.dumps(result))
    for table in parsed["changes"].values():
        table["updated"].sort(key=lambda r: r["id"])
        table["deleted"].sort()
    return parsed


def _both(app, email, cursor, limit=1000, migration=None, token_role=None):
    """The one-statement pull and the generic pull of the same data; checks the device row the
    one-statement pull committed."""
    with app.app_context():
        session = api_db.session()
        user_id, role = session.query(User.id, User.role).filter_by(email=email).one()
        before = session.get(DeviceState, (user_id, "compare"))
        known = (before.resume_rev, before.scope_key) if before else (None, None)
        held = before.held if before else None
        reach = pull.Reach.load(before.reach) if before else None
        owed = Dump.load(before.dump) if before else None
        # A later page of a paged pull keeps the cursor the pull started from.
        paging = (
            before is not None and before.resume_rev is not None and before.resume_rev == cursor
        )
        start = before.pull_start_rev if paging else cursor
        session.rollback()
        reqs = [pull.PullRequest(cursor, limit, migration, *known) for _ in "fs"]
        for req in reqs:
            req.held, req.reach, req.dump = holds.load(held), reach, owed
        try:
            fast = pull_pg.pull(session, user_id, token_role or role, "compare", reqs[0])
        except FreshCursor:
            # As the view does: take a rev, then both pulls again.
            session.rollback()
            revs.advance(session)
            api_db.commit()
            return _both(app, email, cursor, limit, migration, token_role)
        user = session.get(User, user_id)
        slow = pull.pull(session, scope_for(session, user), reqs[1])
        state = session.get(DeviceState, (user_id, "compare"))
        assert (state.last_pulled_rev, state.pull_start_rev) == (fast["timestamp"], start)
        assert state.resume_rev == (fast["timestamp"] if fast["has_more"] else None)
        assert state.held == holds.dump(reqs[1].held)
        assert state.reach == pull.dump_reach(reqs[1].reach)
        assert state.dump == dump_text(reqs[1].dump)
        session.rollback()
    return _normal(fast), _normal(slow)


@pytest.fixture
def history(env, device):
    """Creations, an update with awkward text, answers and a deletion across two sites."""
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, latitude=31.2304, notes='第一次 «quoted» \\ "x"')
    rid = answer(phone, iid, "clean", "no", note="Grease\nunder the sink")
    answer(phone, iid, "fridge", 9.5)
    photo = b"not really a jpeg"
    photo_record(phone, iid, rid, photo, latitude=31.5, captured_at=1_795_000_000_123)
    phone.create(
        "actions",
        inspection_id=iid,
        response_id=rid,
        site_id=env["sites"]["N-HOTEL"],
        title="Degrease «under» the sink",
        priority="high",
        status="open",
        due_at=1_796_000_000_000,
    )
    gone = new_inspection(phone, env, site="N-CANTEEN")
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    phone.sync()
    phone.delete("inspections", gone)
    return phone.sync()["timestamp"]


def test_one_statement_pull_equals_the_generic_pull(app, history):
    top = history
    fast, _slow = _both(app, HQ_EMAIL, None)
    # Every synced table has records, so each table's document is compared.
    assert all(fast["changes"][name]["updated"] for name in TABLES), {
        name: len(t["updated"]) for name, t in fast["changes"].items()
    }
    for email in (ANA, NORTH, HQ_EMAIL):
        for cursor in (None, 0, 3, top - 6, top):
            for limit in (1, 5, 1000):
                fast, slow = _both(app, email, cursor, limit)
                assert fast == slow, (email, cursor, limit)
        # A migration's tables come in the pages after the changes, paged alike.
        cursor, sites, more = top - 6, set(), True
        while more:
            fast, slow = _both(app, email, cursor, 5, migration={"tables": ["actions", "sites"]})
            assert fast == slow
            sites |= {r["id"] for r in fast["changes"]["sites"]["updated"]}
            cursor, more = fast["timestamp"], fast["has_more"]
        assert len(sites) >= 2


def test_pages_follow_each_other_like_the_generic_pages(app, history):
    for email in (ANA, HQ_EMAIL):
        cursor, seen = 0, 0
        while True:
            fast, slow = _both(app, email, cursor, 4)
            assert fast == slow
            seen += sum(len(t["updated"]) + len(t["deleted"]) for t in fast["changes"].values())
            cursor = fast["timestamp"]
            if not fast["has_more"]:
                break
        assert seen > 8


def test_access_changes_and_refusals_join_the_page(app, api, env, device, history):
    top = history
    ben = device(BEN)
    ben.sync()
    new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    grant = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": env["users"][ANA], "site_id": env["sites"]["S-HOTEL"]},
    )
    fast, slow = _both(app, ANA, top)
    assert fast == slow
    assert "S-HOTEL" in {s["code"] for s in fast["changes"]["sites"]["updated"]}
    after_grant = fast["timestamp"]
    api.delete(f"/assignments/{grant.get_json()['id']}", HQ_EMAIL)
    phone = device(ANA, "elsewhere")
    phone.sync()
    new_inspection(phone, env, site="S-HOTEL")  # refused: out of scope again
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["out_of_scope"]
    fast, slow = _both(app, ANA, after_grant)
    assert fast == slow
    for _ in range(2):  # the deletions wait for a push, or for one more sync (none pushes)
        assert not fast["changes"]["inspections"]["deleted"]
        elsewhere(device, env)  # each pull hands out a new cursor
        fast, slow = _both(app, ANA, fast["timestamp"])
        assert fast == slow
    assert fast["changes"]["inspections"]["deleted"]


def test_a_cursor_older_than_purged_tombstones_gets_a_replacement(app, history):
    engine = app.extensions["db_engine"]
    with engine.begin() as conn:
        old = conn.execute(text("SELECT purged_rev FROM sync_counter WHERE id = 1")).scalar_one()
        conn.execute(
            text("UPDATE sync_counter SET purged_rev = :r WHERE id = 1"), {"r": history - 2}
        )
    try:
        fast, slow = _both(app, ANA, history - 4)
        assert fast == slow
        assert fast["experimentalStrategy"] == "replacement"
        assert all(not t["deleted"] for t in fast["changes"].values())
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE sync_counter SET purged_rev = :r WHERE id = 1"), {"r": old})


def test_the_database_role_wins_over_the_token(app, history):
    # A token issued before a role change claims the old role; the scope is today's.
    fast, slow = _both(app, ANA, None, token_role="hq")
    assert fast == slow
    assert {s["code"] for s in fast["changes"]["sites"]["updated"]} == {"N-HOTEL", "N-CANTEEN"}
    fast, slow = _both(app, HQ_EMAIL, None, token_role="inspector")
    assert fast == slow
    assert len(fast["changes"]["sites"]["updated"]) == 4


def test_a_disabled_account_gets_nothing(app, history, db):
    db.execute(text("UPDATE users SET active = false WHERE email = :e"), {"e": ANA})
    db.commit()
    with app.app_context():
        session = api_db.session()
        user_id = session.query(User.id).filter_by(email=ANA).scalar()
        session.rollback()
        with pytest.raises(Unauthorized):
            pull_pg.pull(session, user_id, "inspector", "compare", pull.PullRequest(None, 10, None))
        session.rollback()
        assert session.get(DeviceState, (user_id, "compare")) is None


def test_documents_do_not_depend_on_the_writers_float_setting(app, history):
    # float8 prints according to extra_float_digits; the document functions pin it.
    with app.extensions["db_engine"].begin() as conn:
        conn.execute(text("SET LOCAL extra_float_digits = 0"))
        conn.execute(
            text("UPDATE inspections SET latitude = 31.230400000000003 WHERE latitude IS NOT NULL")
        )
        doc = conn.execute(
            text("SELECT sync_doc FROM inspections WHERE latitude IS NOT NULL")
        ).scalar_one()
    assert orjson.loads(doc)["latitude"] == 31.230400000000003


def test_a_scoped_page_walks_only_its_own_sites_rows(app, env, device, history, db):
    """Many new rows at a site outside Ana's scope: her page must not read past them one by
    one (the generic plan once walked the rev index and filtered every row by site)."""
    ben = device(BEN, "ben")
    ben.sync()
    elsewhere = new_inspection(ben, env, site="S-HOTEL")
    ben.sync()
    top = db.execute(text("UPDATE sync_counter SET value = value + 2000 RETURNING value"))
    top = top.scalar_one()
    db.execute(
        text(
            "INSERT INTO responses (id, inspection_id, item_key, value, site_id, server_rev, "
            "col_revs, created_at, updated_at) SELECT 'bulk' || g, :iid, 'clean', '\"yes\"', "
            ":site, :top - 2000 + g, '{}', now(), now() FROM generate_series(1, 2000) g"
        ),
        {"iid": elsewhere, "site": env["sites"]["S-HOTEL"], "top": top},
    )
    db.execute(text("ANALYZE responses"))
    db.commit()
    names = iter(("$1", "$2", "$3", "$4", "$5"))
    numbered = {key: next(names) for key in ("user", "device", "low", "n", "sid")}
    statement = pull_pg._STATEMENTS[(True, False)].decode()
    for key, number in numbered.items():
        statement = statement.replace(f"%({key})s", number)
    user_id = env["users"][ANA]
    with app.extensions["db_engine"].begin() as conn:
        conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(f"PREPARE page(text, text, bigint, bigint, text) AS {statement}")
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) "
            f"EXECUTE page('{user_id}', 'x', {top - 2000}, 1001, 'a-sign-in')"
        ).scalar_one()
    scans = []

    def walk(node: dict) -> None:
        if node.get("Relation Name") == "responses":
            scans.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert scans and all(s.get("Index Name") == "ix_responses_site_rev" for s in scans), scans
    assert all(s.get("Rows Removed by Filter", 0) == 0 for s in scans), scans


def test_the_pull_refuses_a_session_that_has_begun(app, history):
    """Its snapshot must be the one its own BEGIN opens, not an earlier READ COMMITTED one."""
    with app.app_context():
        session = api_db.session()
        user_id = session.query(User.id).filter_by(email=ANA).scalar()
        with pytest.raises(RuntimeError, match="fresh session"):
            pull_pg.pull(session, user_id, "inspector", "compare", pull.PullRequest(None, 10, None))
        session.rollback()
        assert session.get(DeviceState, (user_id, "compare")) is None
