"""A site gained (an assignment, a site joining a manager's region) and the tables a migration
asks for reach the device in pages of at most `limit` records, like every other change, and
whole: a lost page, a restarted pull and records changed meanwhile leave nothing behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from store.models import Site, SiteAssignment, SyncCounter
from sync import dumps
from sync.pull import SITE_COLUMN
from sync.tables import TABLES
from tests.sync_env import ANA, BEN, HQ_EMAIL, NORTH, answer, new_inspection

LIMIT = 4


def _south_history(env, device, db, runs: int = 3) -> dict[str, set[str]]:
    """Ben's inspections with three answers each at S-HOTEL; returns the ids of every live
    record at the site (its scheduled occurrences too) by table."""
    ben = device(BEN, "ben")
    ben.sync()
    for _ in range(runs):
        iid = new_inspection(ben, env, site="S-HOTEL")
        for key, value in (("clean", "yes"), ("fridge", 4), ("remark", "ok")):
            answer(ben, iid, key, value)
    ben.sync()
    found = _at_site(db, env["sites"]["S-HOTEL"])
    assert len(found["responses"]) >= 3 * runs
    return found


def _at_site(db, site: str) -> dict[str, set[str]]:
    """The ids of the live records at a site, by table."""
    out = {}
    for name, column in SITE_COLUMN.items():
        table = TABLES[name].table
        rows = db.execute(
            select(table.c.id).where(table.c[column] == site, table.c.deleted_at.is_(None))
        )
        out[name] = set(rows.scalars())
    return out


def _grant(api, env, site: str = "S-HOTEL") -> None:
    made = api.post(
        "/assignments",
        HQ_EMAIL,
        json={"user_id": env["users"][ANA], "site_id": env["sites"][site]},
    )
    assert made.status_code == 201, made.get_json()


def _page(dev, cursor: int | None, **params: Any) -> dict:
    query = {"limit": dev.limit or LIMIT, **params}
    if cursor is not None:
        query["last_pulled_at"] = cursor
    resp = dev.client.get("/api/v1/sync/pull", query_string=query, headers=dev.headers())
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _size(page: dict) -> int:
    return sum(len(t["updated"]) + len(t["deleted"]) for t in page["changes"].values())


def _pages(dev, cursor: int | None, **params: Any) -> list[dict]:
    """Every page of one pull from `cursor` (not applied to the device)."""
    out = [_page(dev, cursor, **params)]
    while out[-1]["has_more"]:
        assert len(out) < 100, "the pull does not end"
        out.append(_page(dev, out[-1]["timestamp"], **params))
    return out


def _updated(pages: list[dict], table: str) -> set[str]:
    return {r["id"] for p in pages for r in p["changes"][table]["updated"]}


def test_a_granted_site_arrives_in_pages_of_at_most_the_limit(env, device, api, db):
    history = _south_history(env, device, db)
    phone = device(ANA, "phone", limit=LIMIT)
    phone.sync()
    _grant(api, env)
    pages = _pages(phone, phone.last_pulled_at)
    assert len(pages) >= 4  # 1 site, 3 inspections, 9 answers
    assert all(_size(p) <= LIMIT for p in pages), [_size(p) for p in pages]
    for table, ids in history.items():
        assert ids <= _updated(pages, table), table
    assert env["sites"]["S-HOTEL"] in _updated(pages, "sites")


def test_a_device_syncing_after_a_grant_holds_the_site_as_the_server_does(env, device, api, db):
    history = _south_history(env, device, db)
    phone = device(ANA, "phone", limit=LIMIT)
    phone.sync()
    _grant(api, env)
    phone.sync()
    for table, ids in history.items():
        assert ids <= set(phone.live(table)), table
    assert phone.get("sites", env["sites"]["S-HOTEL"]) is not None
    # The next sync owes nothing more: the device showed it has it all.
    again = _pages(phone, phone.last_pulled_at)
    assert len(again) == 1 and _size(again[0]) == 0


def test_a_lost_page_of_a_granted_site_is_sent_again(env, device, api, db):
    """The answer to the second page never arrives: the client pulls again from its cursor
    (the pages were merged, none applied) and still gets every record."""
    history = _south_history(env, device, db)
    phone = device(ANA, "phone", limit=LIMIT)
    phone.sync()
    _grant(api, env)
    first = _page(phone, phone.last_pulled_at)
    assert first["has_more"]
    _page(phone, first["timestamp"])  # lost
    pages = _pages(phone, phone.last_pulled_at)
    for table, ids in history.items():
        assert ids <= _updated(pages, table), table


def test_a_client_applying_each_page_that_loses_one_still_gets_the_site(env, device, api, db):
    """A client that applies each page as a sync of its own (one page per synchronize) loses
    the answer to a middle page and pulls from the cursor it applied: the rest comes again."""
    history = _south_history(env, device, db)
    phone = device(ANA, "phone", limit=LIMIT)
    phone.one_page = True
    for _ in range(50):
        phone.sync()
        if not phone.has_more:
            break
    _grant(api, env)
    phone.sync()  # the first page, applied
    phone.sync()  # the second
    assert phone.has_more
    lost = _page(phone, phone.last_pulled_at)  # the third page: its answer is lost
    assert lost["has_more"]
    pages = 0
    while phone.has_more or not pages:
        phone.sync()
        pages += 1
        assert pages < 50
    for table, ids in history.items():
        assert ids <= set(phone.live(table)), table
    # It got on from the page it applied: not every record again from the start.
    assert pages < sum(map(len, history.values())) // LIMIT


def test_records_changed_or_deleted_while_the_site_is_paged_arrive_as_they_are_now(
    env, device, api, db
):
    history = _south_history(env, device, db)
    ben = device(BEN, "ben")  # the same device id as the one that made them
    ben.sync()
    phone = device(ANA, "phone", limit=LIMIT)
    phone.sync()
    _grant(api, env)
    # The pull's pages until some answers are sent and some are still to come.
    pages = [_page(phone, phone.last_pulled_at)]
    while not _updated(pages, "responses") and pages[-1]["has_more"]:
        pages.append(_page(phone, pages[-1]["timestamp"]))
    sent = _updated(pages, "responses")
    pending = sorted(history["responses"] - sent)
    assert sent and pending and pages[-1]["has_more"]
    # Meanwhile Ben edits an answer already sent and deletes one not sent yet.
    edited, gone = sorted(sent)[0], pending[-1]
    ben.update("responses", edited, note="re-checked")
    ben.delete("responses", gone)
    ben.sync()
    pages += _pages(phone, pages[-1]["timestamp"])
    final: dict[str, dict] = {}
    for p in pages:  # merged in order, as a client merges the pages of one pull
        for rec in p["changes"]["responses"]["updated"]:
            final[rec["id"]] = rec
        for rid in p["changes"]["responses"]["deleted"]:
            final.pop(rid, None)
    assert final[edited]["note"] == "re-checked"
    assert gone not in final
    assert history["responses"] - {gone} <= set(final)


def _revoke(api, env, db, site: str = "S-HOTEL") -> None:
    db.expire_all()
    assignment = db.scalar(
        select(SiteAssignment.id).where(
            SiteAssignment.user_id == env["users"][ANA],
            SiteAssignment.site_id == env["sites"][site],
            SiteAssignment.revoked_at.is_(None),
        )
    )
    assert api.delete(f"/assignments/{assignment}", HQ_EMAIL).status_code == 204


def _sync_to_the_end(phone) -> None:
    for _ in range(100):
        phone.sync()
        if not phone.has_more:
            return
    raise AssertionError("the pull does not end")


def test_a_site_taken_back_and_given_back_mid_dump_arrives_whole(env, device, api, db):
    """The site is revoked after the first page and given back two pages later: what was
    written there meanwhile went in no page (out of scope), so the site comes whole again."""
    _south_history(env, device, db)
    phone = device(ANA, "phone", limit=LIMIT)
    phone.one_page = True
    _sync_to_the_end(phone)
    _grant(api, env)
    phone.sync()
    assert phone.has_more
    _revoke(api, env, db)
    ben = device(BEN, "ben")
    ben.sync()
    made = new_inspection(ben, env, site="S-HOTEL")
    answer(ben, made, "clean", "yes")
    ben.sync()
    writer = device(ANA, "writer")  # more of Ana's changes than a page holds, after Ben's
    writer.sync()
    for _ in range(LIMIT + 1):
        new_inspection(writer, env)
    writer.sync()
    phone.sync()
    assert phone.has_more
    _grant(api, env)
    _sync_to_the_end(phone)
    _sync_to_the_end(phone)
    db.expire_all()
    for table, ids in _at_site(db, env["sites"]["S-HOTEL"]).items():
        assert ids <= set(phone.live(table)), table
    assert phone.get("inspections", made) is not None


def test_a_site_joining_a_managers_region_arrives_in_pages(env, device, api, db):
    history = _south_history(env, device, db)
    phone = device(NORTH, "north", limit=LIMIT)
    phone.sync()
    north = db.get(Site, env["sites"]["N-HOTEL"]).region_id
    moved = api.patch(f"/sites/{env['sites']['S-HOTEL']}", HQ_EMAIL, json={"region_id": north})
    assert moved.status_code == 200
    pages = _pages(phone, phone.last_pulled_at)
    assert len(pages) >= 4
    assert all(_size(p) <= LIMIT for p in pages), [_size(p) for p in pages]
    for table, ids in history.items():
        assert ids <= _updated(pages, table), table


def test_a_migration_sends_its_tables_in_pages(env, device, api, db):
    history = _south_history(env, device, db)
    phone = device(BEN, "ben-2", limit=LIMIT)
    phone.sync()
    migration = json.dumps({"from": 1, "tables": ["responses"], "columns": []})
    first = _page(phone, phone.last_pulled_at, migration=migration)
    assert first["has_more"] and _size(first) <= LIMIT
    # Later pages of the same pull continue it, with or without the migration repeated.
    pages = [first, *_pages(phone, first["timestamp"])]
    assert all(_size(p) <= LIMIT for p in pages)
    assert history["responses"] <= _updated(pages, "responses")


def test_a_first_sync_owes_nothing_besides_its_pages(env, device, api, db):
    _south_history(env, device, db)
    phone = device(BEN, "fresh", limit=LIMIT)
    migration = json.dumps({"from": 1, "tables": ["responses"], "columns": []})
    pages = _pages(phone, None, migration=migration)
    ids = [r["id"] for p in pages for r in p["changes"]["responses"]["updated"]]
    assert len(ids) == len(set(ids)), "a first sync sends each record once"


def test_a_cursor_from_beyond_the_counter_with_a_migration_is_still_answered(env, device, db):
    """No pull hands out such a cursor, but a buggy client may send one: the rev taken for the
    page cannot move past it, and the page still goes out (no second FreshCursor, no 500)."""
    _south_history(env, device, db)
    phone = device(BEN, "ben-3", limit=LIMIT)
    phone.sync()
    top = db.scalar(select(SyncCounter.value))
    migration = json.dumps({"from": 1, "tables": ["responses"], "columns": []})
    page = _page(phone, top + 1, migration=migration)
    assert page["changes"]["responses"]["updated"]


# --- the bookkeeping, without a server ----------------------------------------------------


def _render(store: dict[tuple[str, str | None], list[int]], log: list):
    """A render over {(table, site): [revs]}: sends those after `after`, up to the budget."""

    def render(task, site, after, budget):
        revs = [r for r in store[(task.table, site)] if after < r <= task.as_of]
        log.extend((task.table, site, r) for r in revs[:budget])
        return min(budget, len(revs)), (revs[budget - 1] if len(revs) > budget else None)

    return render


def test_serve_pages_through_the_sites_and_marks_the_end():
    store = {("a", "s1"): [1, 2, 3], ("a", "s2"): [4], ("b", "s1"): [5, 6]}
    tasks = [dumps.Task("a", ("s1", "s2"), 10), dumps.Task("b", ("s1",), 10)]
    owed = dumps.plan(None, first=False, low=0, end=10, new=tasks)
    log: list = []
    cursor, more = 10, True
    while more:
        owed = dumps.plan(owed, first=False, low=cursor, end=cursor + 1, new=[])
        owed, more = dumps.serve(owed, 2, cursor, cursor + 1, lambda s: True, _render(store, log))
        cursor += 1
        assert cursor < 20
    assert [r for _t, _s, r in log] == [1, 2, 3, 4, 5, 6]
    assert owed is not None and owed.mark == cursor
    # A pull from the last part's cursor on shows the device has it all.
    assert dumps.plan(owed, first=False, low=cursor, end=30, new=[]) is None


def test_a_pull_from_a_cursor_handed_out_with_a_part_carries_on_from_there():
    tasks = (dumps.Task("a", ("s1",), 10),)
    owed = dumps.Dump(tasks, seen=((11, (0, 0, 3)), (12, (0, 0, 5))))
    assert dumps.plan(owed, first=False, low=12, end=13, new=[]).at == (0, 0, 5)
    retried = dumps.plan(owed, first=False, low=11, end=13, new=[])
    assert retried.at == (0, 0, 3) and retried.seen == ((11, (0, 0, 3)),)
    # From anywhere else: all of it again, as of this page.
    again = dumps.plan(owed, first=False, low=9, end=13, new=[])
    assert again == dumps.Dump((dumps.Task("a", ("s1",), 13),))
    done = dumps.Dump(tasks, seen=((11, (1, 0, -1)),), mark=11)
    assert dumps.plan(done, first=False, low=9, end=13, new=[]).at == (0, 0, -1)
    assert dumps.plan(owed, first=True, low=-1, end=13, new=[]) is None


def test_a_part_under_the_cursor_asked_from_asks_for_a_fresh_one():
    owed = dumps.Dump((dumps.Task("a", ("s1",), 10),))
    store = {("a", "s1"): [1]}
    with pytest.raises(dumps.FreshCursor):
        dumps.serve(owed, 5, 10, 10, lambda s: True, _render(store, []))
    # Nothing to send (a page the changes filled): the same cursor is fine.
    same, more = dumps.serve(owed, 0, 10, 10, lambda s: True, _render(store, []))
    assert more and same.at == (0, 0, -1)


def test_a_task_owed_already_is_not_added_twice_and_a_lost_site_is_skipped():
    # The page from cursor 10 took the task on (as of 11); its answer was lost, and the page
    # again from 10 sees the same grants again.
    owed = dumps.Dump((dumps.Task("a", ("s1", "s2"), 11),), seen=((10, (0, 0, -1)),))
    more = dumps.plan(
        owed,
        first=False,
        low=10,
        end=11,
        new=[dumps.Task("a", ("s2", "s3"), 11), dumps.Task("a", ("s1",), 11)],
    )
    assert more.tasks == (dumps.Task("a", ("s1", "s2"), 11), dumps.Task("a", ("s3",), 11))
    # A site gained again since a task older than the cursor listed it (the dump may have
    # passed it while it was out of sight): taken on again, as of this page.
    passed = dumps.Dump((dumps.Task("a", ("s1", "s2"), 10),), seen=((12, (0, 1, -1)),))
    again = dumps.plan(passed, first=False, low=12, end=13, new=[dumps.Task("a", ("s1",), 13)])
    assert again.tasks[-1] == dumps.Task("a", ("s1",), 13) and again.at == (0, 1, -1)
    store = {("a", "s1"): [1], ("a", "s2"): [2], ("a", "s3"): [3]}
    log: list = []
    left, rest = dumps.serve(more, 10, 10, 11, lambda s: s != "s2", _render(store, log))
    assert not rest and [s for _t, s, _r in log] == ["s1", "s3"]
    assert dumps.Dump.load(left.dump()) == left
