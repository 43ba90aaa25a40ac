"""The daily rollups behind compliance reports stay equal to a computation from scratch after
every kind of change, and reports read from them equal reports computed from the inspections."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from inspections import reports
from org import admin
from store import rollups
from store.changeset import ChangeSet
from store.models import Inspection, InspectionDaily, RegionDaily, Site
from store.types import new_id
from sync import writer
from sync.scope import Scope
from sync.tables import TABLES
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.sync_env import answer, new_inspection, write_inspections

UTC = dt.UTC
HQ = Scope(user_id="hq", role="hq", region_id=None, site_ids=None)
DAY0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
GROUPINGS = (
    [],
    ["region"],
    ["site"],
    ["template", "week"],
    ["inspector", "day"],
    ["region", "month"],
    ["region", "template", "week"],
)


def _cells(session: Session, table) -> dict[tuple, list[int]]:
    """A rollup table as key -> measures, checking each row's stored labels on the way."""
    out = {}
    for row in session.execute(select(table)).scalars():
        assert row.week == rollups.week_label(row.day) and row.month == rollups.month_label(row.day)
        place = row.site_id if table is InspectionDaily else row.region_id
        key = (row.day, place, row.template_id, row.inspector_id)
        out[key] = [getattr(row, m) for m in rollups.MEASURES]
    return out


def _expected(session: Session) -> tuple[dict, dict]:
    """Both rollups computed in Python from the inspections and the sites as they are now."""
    rows = session.execute(select(Inspection.__table__)).mappings()
    by_site = rollups.from_rows(rows, dict(session.execute(select(Site.id, Site.timezone)).all()))
    regions = dict(session.execute(select(Site.id, Site.region_id)).all())
    by_region: dict[tuple, list[int]] = {}
    for (day, site, template, inspector), values in by_site.items():
        if site in regions:
            total = by_region.setdefault((day, regions[site], template, inspector), [0] * 5)
            for i, v in enumerate(values):
                total[i] += v
    return by_site, by_region


def assert_consistent(
    app: Any,
    scopes: list[Scope] = (HQ,),
    filters: list[dict] = ({},),
    share: tuple[int, int] = (0, 1),
) -> None:
    """Rollups == from scratch == rebuild, and reports from them == reports without them (for
    share (k, n): the k-th of every n report combinations only)."""
    with Session(bind=app.extensions["db_engine"]) as session:
        by_site, by_region = _expected(session)
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region
        rollups.rebuild(session)
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region
        session.rollback()
        now = dt.datetime.now(UTC)
        periods = [
            (now - dt.timedelta(hours=30), now + dt.timedelta(hours=30)),
            (DAY0 - dt.timedelta(days=3), DAY0 + dt.timedelta(days=10)),  # whole days
            (DAY0 + dt.timedelta(hours=7), DAY0 + dt.timedelta(days=4, hours=5)),  # ragged ends
            (DAY0 + dt.timedelta(days=1, hours=2), DAY0 + dt.timedelta(days=1, hours=20)),
            (dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(2100, 1, 1, tzinfo=UTC)),
        ]
        combinations = [
            (scope, f, start, end, group_by)
            for scope in scopes
            for f in filters
            for start, end in periods
            for group_by in GROUPINGS
        ]
        k, n = share
        for scope, f, start, end, group_by in combinations[k::n]:
            args = (session, scope, start, end, group_by, f, now)
            fast = reports.compliance(*args)
            assert fast == reports.compliance(*args, use_rollups=False), (scope, f, start, group_by)


# --- through the writer, at random --------------------------------------------------------


def _random_values(rnd: random.Random, env: dict, sites: list[str]) -> dict[str, Any]:
    template = env["template"] if rnd.random() < 0.85 else "no-such-version"
    percent = rnd.choice([None, 0.0, 33.3, 50.0, 66.7, 80.0, 87.5, 100.0, 12.3])
    hours = rnd.randrange(-30, 24 * 6)
    return {
        "template_id": template,
        "site_id": rnd.choice(sites),
        "status": rnd.choice(
            ["draft", "in_progress", "completed", "completed", "approved", "returned", "archived"]
        ),
        "inspector_id": rnd.choice([env["users"][ANA], env["users"][BEN], None]),
        "score_percent": percent,
        "passed": None if percent is None else rnd.random() < 0.6,
        "critical_failed": rnd.random() < 0.3,
        "completed_received_at": None
        if rnd.random() < 0.1
        else DAY0 + dt.timedelta(hours=hours, minutes=rnd.randrange(60)),
    }


def test_random_inserts_updates_tombstones_and_moves_keep_the_rollups_exact(app, env):
    rnd = random.Random(2026)
    sites = [*env["sites"].values(), "no-such-site"]
    ids: list[str] = []
    north = next(s for code, s in env["sites"].items() if code == "N-HOTEL")
    scopes = [HQ, Scope(user_id="x", role="inspector", region_id=None, site_ids=frozenset([north]))]
    for round_no in range(8):
        new = []
        for _ in range(6):
            row = {"id": new_id(), **_random_values(rnd, env, sites)}
            new.append(row)
            ids.append(row["id"])
        changes: dict[str, dict] = {}
        for rid in rnd.sample(ids[: -len(new)] or [], min(6, len(ids) - len(new))):
            values = _random_values(rnd, env, sites)
            # Some columns only: a rescoring, a review decision, a move, a tombstone.
            keep = rnd.sample(sorted(values), rnd.randrange(1, 4))
            changes[rid] = {k: values[k] for k in keep}
            if rnd.random() < 0.2:
                changes[rid]["deleted_at"] = dt.datetime.now(UTC)
        write_inspections(app, new, changes)
        if round_no in (2, 4):
            # A site changes time zone (to London), later region: its cells follow it.
            with app.app_context():
                from api import db as api_db

                session = api_db.session()
                site = session.get(Site, north)
                other = next(
                    s.region_id for s in session.query(Site) if s.region_id != site.region_id
                )
                change = {"region_id": other} if round_no == 4 else {"timezone": "Europe/London"}
                admin.update_site(session, HQ, north, change)
                api_db.commit()
        # The rollup cells every round; the reports' 210 combinations a third at a time, each
        # seen in two or three rounds, and all of them at the end.
        share = (0, 1) if round_no == 7 else (round_no % 3, 3)
        filters = [{}, {"template_key": "sync_probe"}, {"inspector_id": env["users"][ANA]}]
        assert_consistent(app, scopes, filters, share)


def test_a_change_committed_after_the_plan_loaded_its_row_is_not_lost(app, env):
    iid = new_id()
    base = {"id": iid, **_random_values(random.Random(1), env, list(env["sites"].values()))}
    base.update(status="completed", completed_received_at=DAY0, score_percent=50.0)
    write_inspections(app, [base], {})
    with app.app_context():
        from api import db as api_db

        session = api_db.session()
        cs = ChangeSet(user_id="hq", role="hq", device_id=None, now_ms=0)
        table = TABLES["inspections"].table
        row = writer.load_rows(session, table, "id", [iid])[0]
        cs.add_context("inspections", row)["score_percent"] = 70.0
        session.commit()  # SQLite: let the other writer in, as a concurrent request would
        # Meanwhile another transaction archives the inspection and moves it a day later: the
        # plan's `before` row is stale when it is written.
        later = DAY0 + dt.timedelta(days=1)
        write_inspections(app, [], {iid: {"status": "archived", "completed_received_at": later}})
        writer.write(session, cs)
        api_db.commit()
    assert_consistent(app)


# --- through the API, as the app changes inspections -----------------------------------------


def _complete(phone, env, answers, site="N-HOTEL"):
    iid = new_inspection(phone, env, site=site)
    for key, value in answers.items():
        answer(phone, iid, key, value)
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    return iid


def test_review_rework_rescoring_site_moves_and_purge_keep_the_rollups_exact(
    app, api, env, device, db
):
    ana, ben = device(ANA), device(BEN)
    ana.sync()
    ben.sync()
    good = _complete(ana, env, {"clean": "yes", "fridge": 3})
    bad = _complete(ana, env, {"clean": "no", "fridge": 9}, site="N-CANTEEN")
    other = _complete(ben, env, {"clean": "yes", "fridge": 7}, site="S-HOTEL")
    regional = Scope(
        user_id="m",
        role="regional_manager",
        region_id=None,
        site_ids=frozenset(env["sites"].values()),
    )
    assert_consistent(app, [HQ, regional])
    assert api.post(f"/inspections/{good}/approve", NORTH, json={}).status_code == 200
    assert (
        api.post(f"/inspections/{bad}/return", NORTH, json={"comment": "redo"}).status_code == 200
    )
    assert_consistent(app)
    # Rework: the returned inspection is answered again and completed again, so rescored.
    ana.sync()
    fridge = next(
        rid
        for rid, r in ana.live("responses").items()
        if r["inspection_id"] == bad and r["item_key"] == "fridge"
    )
    ana.update("responses", fridge, value="2")
    ana.update("inspections", bad, status="completed")
    assert ana.sync()["conflicts"] == []
    assert db.get(Inspection, bad).status == "completed"
    assert_consistent(app)
    assert api.post(f"/inspections/{other}/archive", HQ_EMAIL, json={}).status_code == 200
    assert_consistent(app)
    # The canteen moves to the south region; then the south hotel closes and is purged.
    south = db.get(Site, env["sites"]["S-HOTEL"]).region_id
    moved = api.patch(f"/sites/{env['sites']['N-CANTEEN']}", HQ_EMAIL, json={"region_id": south})
    assert moved.status_code == 200, moved.get_json()
    period = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z&group_by=region"
    rows = api.get(f"/reports/compliance?{period}", HQ_EMAIL).get_json()
    assert {r["region"]: r["inspections_completed"] for r in rows} == {
        db.get(Site, env["sites"]["N-HOTEL"]).region_id: 1,
        south: 2,
    }
    assert_consistent(app)


def test_a_purged_site_leaves_the_region_rollup(app, env, db):
    with app.app_context():
        from api import db as api_db

        session = api_db.session()
        region = db.get(Site, env["sites"]["S-HOTEL"]).region_id
        data = {"region_id": region, "name": "Pop-up", "code": "POPUP", "timezone": "UTC"}
        popup = admin.create_site(session, HQ, data).id
        api_db.commit()
    rnd = random.Random(3)
    rows = []
    for site in (popup, popup, env["sites"]["S-HOTEL"]):
        row = {"id": new_id(), **_random_values(rnd, env, [site])}
        row.update(status="approved", completed_received_at=DAY0, template_id=env["template"])
        rows.append(row)
    write_inspections(app, rows, {})
    assert_consistent(app)
    period = {"start": DAY0, "end": DAY0 + dt.timedelta(days=1)}
    with Session(bind=app.extensions["db_engine"]) as session:
        got = reports.compliance(session, HQ, *period.values(), ["region"], {}, DAY0)
    assert [r["inspections_completed"] for r in got] == [3]
    with app.app_context():
        from api import db as api_db

        session = api_db.session()
        admin.delete_site(session, HQ, popup)
        api_db.commit()
    # Closed long ago, so past the horizon: its inspections (still live) leave every report.
    long_ago = dt.datetime.now(UTC) - dt.timedelta(days=400)
    db.execute(update(Site).where(Site.id == popup).values(deleted_at=long_ago))
    assert app.test_cli_runner().invoke(args=["sync", "purge"]).exit_code == 0
    assert db.execute(select(Site.id).where(Site.id == popup)).first() is None
    with Session(bind=app.extensions["db_engine"]) as session:
        got = reports.compliance(session, HQ, *period.values(), ["region"], {}, DAY0)
    assert [r["inspections_completed"] for r in got] == [1]
    assert_consistent(app)


# --- the migration's backfill ---------------------------------------------------------------


def test_the_0002_migration_backfills_both_rollups_from_existing_inspections(tmp_path):
    from alembic import command
    from sqlalchemy import insert

    from api.cli import alembic_config
    from store.db import make_engine
    from store.models import Region

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    rnd = random.Random(5)
    with engine.begin() as conn:
        conn.execute(insert(Region.__table__), [{"id": r, "name": r, "code": r} for r in "NS"])
        sites = [f"site-{n}" for n in range(4)]
        conn.execute(
            insert(Site.__table__),
            [
                {"id": s, "region_id": "NS"[n % 2], "name": s, "code": s, "server_rev": 0}
                for n, s in enumerate(sites)
            ],
        )
        env = {"template": "v1", "users": {ANA: "ana", BEN: "ben"}}
        rows = []
        for _ in range(200):
            row = {"id": new_id(), "server_rev": 0, **_random_values(rnd, env, sites)}
            row["deleted_at"] = dt.datetime.now(UTC) if rnd.random() < 0.1 else None
            rows.append(row)
        conn.execute(insert(Inspection.__table__), rows)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with Session(bind=engine) as session:
        by_site, by_region = _expected(session)
        assert len(by_site) > 20 and len(by_region) > 10
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region
    engine.dispose()
