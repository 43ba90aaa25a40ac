"""Compliance summaries group by the calendar day, ISO week and month at each inspection's (and
occurrence's, and action's) site, in the site's time zone; the daily rollups are keyed by that
local day, stay exact when a site changes time zone, and the 0005 migration re-keys them."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, event, insert, select, text, update
from sqlalchemy.orm import Session

from inspections import reports
from store import rollups
from store.db import normalise_url
from store.models import Action, Inspection, InspectionDaily, Occurrence, Region, RegionDaily, Site
from store.types import new_id
from sync.scope import Scope
from tests.conftest import ANA, HQ_EMAIL, NORTH, TEST_DATABASE_URL
from tests.sync_env import write_inspections

UTC = dt.UTC
HQ = Scope(user_id="hq", role="hq", region_id=None, site_ids=None)
# Sunday 31 May 2026, 23:30 UTC is Monday 1 June, 07:30 in Shanghai: another day, another ISO
# week and another month.
LATE_SUNDAY = dt.datetime(2026, 5, 31, 23, 30, tzinfo=UTC)
SHANGHAI_DAY = {"day": "2026-06-01", "week": "2026-W23", "month": "2026-06"}
UTC_DAY = {"day": "2026-05-31", "week": "2026-W22", "month": "2026-05"}
GROUPINGS = (
    [],
    ["day"],
    ["week"],
    ["month"],
    ["region", "day"],
    ["site", "day"],
    ["site", "week"],
    ["template", "month"],
    ["inspector", "day"],
)


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def _inspection(env: dict, code: str, when: dt.datetime, **extra: Any) -> dict[str, Any]:
    """A completed inspection at a demo site, as the sync writer's plan holds it."""
    return {
        "id": new_id(),
        "template_id": env["template"],
        "site_id": env["sites"][code],
        "status": "completed",
        "inspector_id": env["users"][ANA],
        "score_percent": 80.0,
        "passed": True,
        "critical_failed": False,
        "completed_received_at": when,
        **extra,
    }


def _set_zone(api: Any, env: dict, code: str, zone: str, **more: Any) -> None:
    resp = api.patch(f"/sites/{env['sites'][code]}", HQ_EMAIL, json={"timezone": zone, **more})
    assert resp.status_code == 200, resp.get_json()


def _report(app: Any, start, end, group_by, scope=HQ, filters=None, use_rollups=True) -> list:
    # "Now" is the period's end (for days, the end day's UTC midnight).
    now = end if isinstance(end, dt.datetime) else dt.datetime.combine(end, dt.time(), UTC)
    with Session(bind=app.extensions["db_engine"]) as session:
        return reports.compliance(
            session, scope, start, end, group_by, filters or {}, now, use_rollups=use_rollups
        )


def _cells(session: Session, table: Any) -> dict[tuple, list[int]]:
    """A rollup table as key -> measures, checking each row's stored labels on the way."""
    out = {}
    for row in session.execute(select(table)).scalars():
        assert row.week == rollups.week_label(row.day) and row.month == rollups.month_label(row.day)
        place = row.site_id if table is InspectionDaily else row.region_id
        out[(row.day, place, row.template_id, row.inspector_id)] = [
            getattr(row, m) for m in rollups.MEASURES
        ]
    return out


def _by_site(session: Session, zone_of: Any) -> dict[tuple, list[int]]:
    """inspection_daily computed here from the inspections, with zone_of(site id) the zone to
    take its days in (None: the site's inspections have no cell)."""
    cells: dict[tuple, list[int]] = {}
    for r in session.execute(select(Inspection.__table__)).mappings():
        zone = zone_of(r["site_id"])
        counted = r["status"] in rollups.COUNTED_STATUSES and r["deleted_at"] is None
        if zone is None or not counted or r["completed_received_at"] is None:
            continue
        day = r["completed_received_at"].astimezone(ZoneInfo(zone)).date()
        total = cells.setdefault(
            (day, r["site_id"], r["template_id"], r["inspector_id"] or ""), [0] * 5
        )
        for i, v in enumerate(
            rollups.measures(r["passed"], r["critical_failed"], r["score_percent"])
        ):
            total[i] += v
    return cells


def _from_scratch(session: Session) -> tuple[dict, dict]:
    """Both rollups computed from the inspections and the sites as they are now."""
    zones = dict(session.execute(select(Site.id, Site.timezone)).all())
    regions = dict(session.execute(select(Site.id, Site.region_id)).all())
    by_site = _by_site(session, zones.get)
    by_region: dict[tuple, list[int]] = {}
    for (day, site, template, inspector), values in by_site.items():
        total = by_region.setdefault((day, regions[site], template, inspector), [0] * 5)
        for i, v in enumerate(values):
            total[i] += v
    return by_site, by_region


def _assert_rollups_exact(app: Any) -> None:
    with Session(bind=app.extensions["db_engine"]) as session:
        by_site, by_region = _from_scratch(session)
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region


# --- labels at a day boundary ----------------------------------------------------------------


@pytest.mark.parametrize(
    "start,end",
    [
        (_utc(2026, 5, 20), _utc(2026, 6, 10)),  # Monday 1 June read from the rollups
        (_utc(2026, 5, 31, 20), _utc(2026, 6, 1, 3)),  # no whole day: from the inspection
    ],
)
def test_a_late_sunday_utc_inspection_is_monday_1_june_in_shanghai(app, env, api, start, end):
    write_inspections(app, [_inspection(env, "N-HOTEL", LATE_SUNDAY)])
    for unit, label in SHANGHAI_DAY.items():
        for use_rollups in (True, False):
            rows = _report(app, start, end, [unit], use_rollups=use_rollups)
            assert [(r[unit], r["inspections_completed"]) for r in rows] == [(label, 1)]
    query = urlencode({"start": start.isoformat(), "end": end.isoformat(), "group_by": "day"})
    for who in (HQ_EMAIL, NORTH):
        got = api.get(f"/reports/compliance?{query}", who).get_json()
        assert [(r["day"], r["inspections_completed"]) for r in got] == [("2026-06-01", 1)]
    with Session(bind=app.extensions["db_engine"]) as session:
        cells = session.execute(select(InspectionDaily)).scalars().all()
        assert [(c.day.isoformat(), c.week, c.month) for c in cells] == [
            tuple(SHANGHAI_DAY.values())
        ]
    _assert_rollups_exact(app)


def _occurrence_due(api: Any, env: dict, db: Session, when: dt.datetime) -> None:
    """One occurrence at N-HOTEL due at `when` (the schedule's others lie months later)."""
    tpl = next(
        t
        for t in api.get("/templates?page_size=50", HQ_EMAIL).get_json()
        if t["template_key"] == "sync_probe"
    )
    body = {
        "template_id": tpl["id"],
        "site_id": env["sites"]["N-HOTEL"],
        "recurrence": {"freq": "daily", "times": ["09:00"]},
        "assignee_ids": [env["users"][ANA]],
    }
    made = api.post("/schedules", HQ_EMAIL, json=body)
    assert made.status_code == 201, made.get_json()
    # The schedule's own first occurrence: the demo's schedules have theirs too, and which one
    # is due first depends on the hour the test runs.
    mine = select(Occurrence.id).where(Occurrence.schedule_id == made.get_json()["id"])
    first = db.execute(mine.order_by(Occurrence.due_at).limit(1)).scalar_one()
    db.execute(
        update(Occurrence)
        .where(Occurrence.id == first)
        .values(window_start=when, due_at=when, miss_at=when + dt.timedelta(hours=2))
    )


def test_occurrences_and_actions_fall_on_the_day_at_their_site(app, env, api, db):
    _occurrence_due(api, env, db, LATE_SUNDAY)
    site = env["sites"]["N-HOTEL"]
    action = {"id": new_id(), "site_id": site, "title": "Fix", "created_at": LATE_SUNDAY}
    db.execute(insert(Action.__table__).values(server_rev=0, **action))
    start, end = _utc(2026, 5, 25), _utc(2026, 6, 8)
    for unit, label in SHANGHAI_DAY.items():
        rows = _report(app, start, end, [unit])
        assert [(r[unit], r["occurrences_scheduled"], r["actions_opened"]) for r in rows] == [
            (label, 1, 1)
        ]
    # The same instants at a site in London (UTC+1 in summer) fall on 1 June too, at 00:30;
    # in Hawaii (UTC-10) on Sunday 31 May, at 13:30.
    for zone, expected in (("Europe/London", SHANGHAI_DAY), ("Pacific/Honolulu", UTC_DAY)):
        _set_zone(api, env, "N-HOTEL", zone)
        rows = _report(app, start, end, ["site", "day", "week", "month"])
        assert [(r["day"], r["week"], r["month"]) for r in rows] == [tuple(expected.values())]


# --- sites in other time zones -----------------------------------------------------------------


def test_the_same_instant_is_another_day_in_london_than_in_shanghai(app, env, api):
    _set_zone(api, env, "S-STORE", "Europe/London")
    london, shanghai = env["sites"]["S-STORE"], env["sites"]["S-HOTEL"]
    sunday_night = _utc(2026, 3, 1, 23, 30)  # GMT in London: still Sunday 1 March there
    write_inspections(
        app,
        [
            _inspection(env, "S-STORE", sunday_night),
            _inspection(env, "S-HOTEL", sunday_night),
            _inspection(env, "S-STORE", LATE_SUNDAY),  # BST: 00:30 on Monday 1 June
        ],
    )
    start, end = _utc(2026, 2, 20, 5), _utc(2026, 6, 20, 5)
    for use_rollups in (True, False):
        rows = _report(app, start, end, ["site", "day"], use_rollups=use_rollups)
        got = {(r["site"], r["day"]): r["inspections_completed"] for r in rows}
        assert got == {
            (london, "2026-03-01"): 1,
            (shanghai, "2026-03-02"): 1,
            (london, "2026-06-01"): 1,
        }
        weeks = _report(app, start, end, ["week"], use_rollups=use_rollups)
        assert {r["week"]: r["inspections_completed"] for r in weeks} == {
            "2026-W09": 1,
            "2026-W10": 1,
            "2026-W23": 1,
        }
    _assert_rollups_exact(app)


# --- rollups against raw rows ------------------------------------------------------------------


def _boundary_instants(rnd: random.Random) -> Iterator[dt.datetime]:
    """Instants around UTC, Shanghai and London midnights from 26 Feb to 10 March 2026."""
    for day in range(13):
        base = _utc(2026, 2, 26) + dt.timedelta(days=day)
        for hour, minute in ((23, 30), (15, 59), (16, 0), (16, 1), (0, 0), (7, 30), (23, 59)):
            yield base.replace(hour=hour, minute=minute)
        yield base + dt.timedelta(minutes=rnd.randrange(24 * 60))


def test_rollups_and_raw_rows_agree_across_time_zones_with_ragged_ends(app, env, api):
    _set_zone(api, env, "N-CANTEEN", "Europe/London")  # region N: Shanghai and London
    _set_zone(api, env, "S-HOTEL", "Asia/Hong_Kong")  # region S: the same days as Shanghai
    rnd = random.Random(8)
    codes = sorted(env["sites"])
    rows = [
        _inspection(env, rnd.choice(codes), when, score_percent=rnd.choice([None, 50.0, 100.0]))
        for when in _boundary_instants(rnd)
    ]
    # Fewer than 50 rows a push: SQLite's batch insert (sync/writer.py _insert_sqlite) stores
    # times as '... 00:00:00+00:00', which compares below the bound '... 00:00:00.000000' of a
    # period starting at that very instant.
    for start in range(0, len(rows), 40):
        write_inspections(app, rows[start : start + 40])
    zones = {env["sites"]["N-CANTEEN"]: "Europe/London", env["sites"]["S-HOTEL"]: "Asia/Hong_Kong"}

    def local_day(row: dict) -> str:
        zone = ZoneInfo(zones.get(row["site_id"], "Asia/Shanghai"))
        return row["completed_received_at"].astimezone(zone).date().isoformat()

    north = frozenset(env["sites"][c] for c in ("N-HOTEL", "N-CANTEEN"))
    with Session(bind=app.extensions["db_engine"]) as session:
        regions = dict(session.execute(select(Site.code, Site.region_id)).all())
    scopes = [HQ, Scope(user_id="m", role="regional_manager", region_id=None, site_ids=north)]
    filters = [{}, {"region_id": regions["N-HOTEL"]}, {"region_id": regions["S-HOTEL"]}]
    periods = [
        (_utc(2026, 2, 27, 5), _utc(2026, 3, 8, 20)),  # ragged at both ends in every zone
        (_utc(2026, 2, 28, 16), _utc(2026, 3, 5, 16)),  # whole Shanghai days, ragged in London
        (_utc(2026, 3, 1, 23, 30), _utc(2026, 3, 3, 0, 30)),
        (_utc(2026, 3, 2, 2), _utc(2026, 3, 2, 20)),  # no whole day anywhere
        (_utc(1970, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # Days at each site, the end excluded (as reports.period passes them).
        (dt.date(2026, 2, 28), dt.date(2026, 3, 5)),
        (dt.date(2026, 3, 2), dt.date(2026, 3, 3)),
        (dt.date(1970, 1, 1), dt.date(9999, 12, 31)),
    ]

    def within(row: dict, start, end) -> bool:
        if reports.is_days(start):
            return start.isoformat() <= local_day(row) < end.isoformat()
        return start <= row["completed_received_at"] < end

    for start, end in periods:
        # The raw rows grouped through zoneinfo here: what the report must say.
        expected = Counter((r["site_id"], local_day(r)) for r in rows if within(r, start, end))
        got = _report(app, start, end, ["site", "day"])
        # (The demo's occurrences make groups of their own, without inspections.)
        counted = {(r["site"], r["day"]): r["inspections_completed"] for r in got}
        assert {k: n for k, n in counted.items() if n} == expected
        for scope in scopes:
            for f in filters:
                for group_by in GROUPINGS:
                    fast = _report(app, start, end, group_by, scope, f)
                    slow = _report(app, start, end, group_by, scope, f, use_rollups=False)
                    assert fast == slow, (start, end, scope.role, f, group_by)
    _assert_rollups_exact(app)


def test_region_daily_serves_only_zones_with_the_same_days(app, env, api):
    _set_zone(api, env, "N-CANTEEN", "Europe/London")
    _set_zone(api, env, "S-HOTEL", "Asia/Hong_Kong")
    # 00:30 on 1 June in Shanghai and Hong Kong, 17:30 on 31 May in London.
    when = _utc(2026, 5, 31, 16, 30)
    write_inspections(app, [_inspection(env, code, when) for code in sorted(env["sites"])])
    with Session(bind=app.extensions["db_engine"]) as session:
        regions = dict(session.execute(select(Site.code, Site.region_id)).all())
    start, end = _utc(2026, 5, 20, 5), _utc(2026, 6, 10, 5)
    engine = app.extensions["db_engine"]
    for code, tables in (("S-HOTEL", {"region_daily"}), ("N-HOTEL", {"inspection_daily"})):
        seen: list[str] = []

        def record(conn, cursor, statement, *args, seen=seen):
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            rows = _report(app, start, end, ["region", "day"], filters={"region_id": regions[code]})
        finally:
            event.remove(engine, "before_cursor_execute", record)
        read = {t for t in ("region_daily", "inspection_daily") if any(t in s for s in seen)}
        assert read == tables
        days = {"S-HOTEL": {"2026-06-01": 2}, "N-HOTEL": {"2026-06-01": 1, "2026-05-31": 1}}
        assert {r["day"]: r["inspections_completed"] for r in rows} == days[code]


def test_a_period_of_days_reads_region_daily_whatever_the_zones(app, env, api):
    _set_zone(api, env, "N-CANTEEN", "Europe/London")
    # 00:30 on 1 June in Shanghai, 17:30 on 31 May in London.
    when = _utc(2026, 5, 31, 16, 30)
    write_inspections(app, [_inspection(env, code, when) for code in ("N-HOTEL", "N-CANTEEN")])
    engine = app.extensions["db_engine"]
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        june = _report(app, dt.date(2026, 6, 1), dt.date(2026, 6, 2), ["region", "day"])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("region_daily" in s for s in seen)
    assert not any("inspection_daily" in s for s in seen)
    assert [(r["day"], r["inspections_completed"]) for r in june] == [("2026-06-01", 1)]
    may = _report(app, dt.date(2026, 5, 31), dt.date(2026, 6, 1), ["site", "day"])
    assert [(r["site"], r["day"]) for r in may if r["inspections_completed"]] == [
        (env["sites"]["N-CANTEEN"], "2026-05-31")
    ]


def _days(api: Any, path: str, first: str, last: str, who: str = HQ_EMAIL, **more: str):
    query = urlencode({"start": first, "end": last, **more})
    resp = api.get(f"/reports/{path}?{query}", who)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_dates_ask_for_the_days_at_each_site_the_end_day_included(app, env, api, db):
    """The same instant is Monday 1 June at a Shanghai site and Sunday 31 May at a Honolulu
    one: a report of 1 June counts the first, a report of 31 May the second, through the API,
    for inspections, occurrences and actions alike."""
    _set_zone(api, env, "N-CANTEEN", "Pacific/Honolulu")
    shanghai, honolulu = env["sites"]["N-HOTEL"], env["sites"]["N-CANTEEN"]
    write_inspections(
        app, [_inspection(env, code, LATE_SUNDAY) for code in ("N-HOTEL", "N-CANTEEN")]
    )
    _occurrence_due(api, env, db, LATE_SUNDAY)  # at N-HOTEL
    action = {"id": new_id(), "site_id": honolulu, "title": "Fix", "created_at": LATE_SUNDAY}
    db.execute(insert(Action.__table__).values(server_rev=0, **action))
    db.commit()
    figures = ("inspections_completed", "occurrences_scheduled", "actions_opened")
    for who in (HQ_EMAIL, NORTH):
        for first, last, expected in (
            ("2026-06-01", "2026-06-01", {shanghai: (1, 1, 0)}),
            ("2026-05-31", "2026-05-31", {honolulu: (1, 0, 1)}),
            ("2026-05-31", "2026-06-01", {shanghai: (1, 1, 0), honolulu: (1, 0, 1)}),
        ):
            rows = _days(api, "compliance", first, last, who, group_by="site")
            got = {
                r["site"]: tuple(r[f] for f in figures) for r in rows if any(r[f] for f in figures)
            }
            assert got == expected, (who, first, last)
    # The report's days are each site's: the day column says so.
    rows = _days(api, "compliance", "2026-05-31", "2026-06-01", group_by="site,day")
    assert {(r["site"], r["day"]) for r in rows if r["inspections_completed"]} == {
        (shanghai, "2026-06-01"),
        (honolulu, "2026-05-31"),
    }


def test_failing_items_of_a_period_of_days_are_those_of_each_sites_days(api, env, db, completed):
    _, iid = completed
    db.execute(
        update(Inspection).where(Inspection.id == iid).values(completed_received_at=LATE_SUNDAY)
    )
    db.commit()
    failed = {("clean", 1), ("fridge", 1)}

    def items(day: str) -> set:
        return {(r["item_key"], r["failures"]) for r in _days(api, "failing-items", day, day)}

    assert (items("2026-06-01"), items("2026-05-31")) == (failed, set())  # Shanghai: Monday
    _set_zone(api, env, "N-HOTEL", "Pacific/Honolulu")
    assert (items("2026-06-01"), items("2026-05-31")) == (set(), failed)  # Honolulu: Sunday


@pytest.mark.parametrize(
    "query,field,words",
    [
        ("start=2026-06-01&end=2026-06-30T00:00:00Z", "end", "both"),
        ("start=2026-06-02&end=2026-06-01", "end", "on or after"),
        ("start=2026-06-01T00:00:00&end=2026-06-02", "start", "date alone"),
        ("start=2026-02-30&end=2026-03-01", "start", "2026-11-01"),
        ("start=1969-12-31&end=2026-03-01", "start", "1970-01-01"),
        ("start=2026-03-01&end=9999-12-31", "end", "9999-12-30"),
    ],
)
def test_a_period_of_days_that_cannot_be_read_is_a_422_naming_it(api, env, query, field, words):
    for path in ("compliance", "failing-items", "compliance.png"):
        resp = api.get(f"/reports/{path}?{query}", HQ_EMAIL)
        body = resp.get_json()
        assert resp.status_code == 422, (path, query, body)
        assert words in body["message"] or words in str(body.get("errors")), body
        assert field in str(body.get("errors")), body
    if words == "both":  # said in Chinese too
        resp = api.get(f"/reports/compliance?{query}", HQ_EMAIL, headers={"Accept-Language": "zh"})
        assert "各门店当地" in resp.get_json()["message"], resp.get_json()


# --- the writer's site lookups -----------------------------------------------------------------


def test_record_writes_reads_the_sites_once_and_keys_cells_by_local_day(app, env):
    engine = app.extensions["db_engine"]
    counted = [
        # Plan rows may leave columns out.
        {
            "id": new_id(),
            "site_id": env["sites"][code],
            "template_id": env["template"],
            "status": "completed",
            "completed_received_at": LATE_SUNDAY + dt.timedelta(minutes=n),
        }
        for n, code in enumerate(sorted(env["sites"]) * 10)
    ]
    drafts = [{"id": new_id(), "site_id": env["sites"]["N-HOTEL"], "status": "draft"}] * 5
    with Session(bind=engine) as session:
        session.connection()
        seen: list[str] = []

        def record(conn, cursor, statement, *args):
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            rollups.record_writes(session, drafts, {})
            assert seen == []
            rollups.record_writes(session, counted, {})
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert sum(1 for s in seen if "FROM sites" in s) == 1
        days = session.execute(select(InspectionDaily.day, InspectionDaily.completed)).all()
        assert days == [(dt.date(2026, 6, 1), 10)] * 4
        session.rollback()


# --- a site changing time zone ---------------------------------------------------------------


def _region_of(app: Any, code: str) -> str:
    """The region a demo site is in now."""
    with Session(bind=app.extensions["db_engine"]) as session:
        return session.execute(select(Site.region_id).where(Site.code == code)).scalar_one()


def test_a_site_changing_time_zone_has_its_cells_rekeyed(app, env, api):
    early = _utc(2026, 3, 2, 16, 30)  # Tuesday 00:30 in Shanghai, Monday 16:30 in London
    rows = [
        _inspection(env, "N-HOTEL", LATE_SUNDAY),
        _inspection(env, "N-HOTEL", early),
        _inspection(env, "N-CANTEEN", early),
    ]
    write_inspections(app, rows)
    start, end = _utc(2026, 2, 20), _utc(2026, 6, 20)
    hotel = env["sites"]["N-HOTEL"]

    def days():
        got = _report(app, start, end, ["site", "day"])
        assert got == _report(app, start, end, ["site", "day"], use_rollups=False)
        return {(r["day"], r["inspections_completed"]) for r in got if r["site"] == hotel}

    assert days() == {("2026-06-01", 1), ("2026-03-03", 1)}
    _set_zone(api, env, "N-HOTEL", "Europe/London")
    _assert_rollups_exact(app)
    assert days() == {("2026-06-01", 1), ("2026-03-02", 1)}
    # Zone and region at once, then back: the cells follow both.
    south = _region_of(app, "S-HOTEL")
    _set_zone(api, env, "N-HOTEL", "Pacific/Honolulu", region_id=south)
    _assert_rollups_exact(app)
    assert days() == {("2026-05-31", 1), ("2026-03-02", 1)}
    by_region = _report(app, start, end, ["region", "month"])
    assert by_region == _report(app, start, end, ["region", "month"], use_rollups=False)
    assert {(r["region"], r["month"]) for r in by_region} == {
        (south, "2026-05"),
        (south, "2026-03"),
        (_region_of(app, "N-CANTEEN"), "2026-03"),
    }
    _set_zone(api, env, "N-HOTEL", "Asia/Shanghai")
    _assert_rollups_exact(app)
    assert days() == {("2026-06-01", 1), ("2026-03-03", 1)}


def test_a_site_changing_zone_and_region_writes_its_region_cells_in_one_batch(app, env, api):
    # One sorted batch: in two (a move, then a re-key) a push adding to cells of both regions
    # in between could hold a cell one batch waits for while waiting for one it holds.
    # Tuesday 00:30 in Shanghai, Monday 16:30 in London: the cell moves day as well as region.
    write_inspections(app, [_inspection(env, "N-HOTEL", _utc(2026, 3, 2, 16, 30))])
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        # The upserts take the cells' locks (emptied cells are then deleted: those same ones).
        if statement.lstrip().upper().startswith("INSERT INTO REGION_DAILY"):
            statements.append(statement)

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        _set_zone(api, env, "N-HOTEL", "Europe/London", region_id=_region_of(app, "S-HOTEL"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 1, statements
    _assert_rollups_exact(app)


# --- the migration -------------------------------------------------------------------------------


@pytest.fixture
def scratch_engine(tmp_path) -> Iterator[Any]:
    """An empty database of its own: a SQLite file, or a PostgreSQL schema of its own."""
    from store.db import make_engine

    if not TEST_DATABASE_URL:
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"mig_{uuid.uuid4().hex[:12]}"
    url = normalise_url(TEST_DATABASE_URL)
    admin_engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(url, connect_args={"options": f"-c search_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin_engine.dispose()


def _utc_cells(session: Session) -> dict[tuple, list[int]]:
    """inspection_daily as 0002 keyed it: UTC days, unknown sites included."""
    return _by_site(session, lambda site: "UTC")


def test_the_0005_migration_rekeys_utc_rollups_by_local_day_and_back(scratch_engine):
    from alembic import command

    from api.cli import alembic_config

    engine = scratch_engine
    cfg = alembic_config()

    def migrate(step: str, target: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, target)

    migrate("upgrade", "0001")
    zones = ["Asia/Shanghai", "Asia/Shanghai", "Europe/London", "America/New_York"]
    sites = [f"site-{n}" for n in range(len(zones))]
    rnd = random.Random(5)
    with engine.begin() as conn:
        conn.execute(insert(Region.__table__), [{"id": r, "name": r, "code": r} for r in "NS"])
        conn.execute(
            insert(Site.__table__),
            [
                {"id": s, "region_id": "NS"[n % 2], "name": s, "code": s, "timezone": z}
                for n, (s, z) in enumerate(zip(sites, zones, strict=True))
            ],
        )
        rows = []
        for when in _boundary_instants(rnd):
            site = rnd.choice([*sites, "no-such-site"])
            rows.append(
                {
                    "id": new_id(),
                    "server_rev": 0,
                    "template_id": rnd.choice(["v1", "v2"]),
                    "site_id": site,
                    "status": rnd.choice(["completed", "approved", "archived", "draft"]),
                    "inspector_id": rnd.choice(["ana", None]),
                    "score_percent": rnd.choice([None, 12.3, 87.5]),
                    "passed": rnd.random() < 0.5,
                    "critical_failed": rnd.random() < 0.3,
                    "completed_received_at": when,
                    "deleted_at": when if rnd.random() < 0.1 else None,
                }
            )
        conn.execute(insert(Inspection.__table__), rows)
    migrate("upgrade", "0004")
    with Session(bind=engine) as session:
        utc = _utc_cells(session)
        assert _cells(session, InspectionDaily) == utc
    migrate("upgrade", "head")
    with Session(bind=engine) as session:
        by_site, by_region = _from_scratch(session)
        assert by_site != {k: v for k, v in utc.items() if k[1] in sites}
        assert len(by_site) > 30 and len(by_region) > 15
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region
        rollups.rebuild(session)
        assert _cells(session, InspectionDaily) == by_site
        assert _cells(session, RegionDaily) == by_region
        session.rollback()
    migrate("downgrade", "0004")
    with Session(bind=engine) as session:
        assert _cells(session, InspectionDaily) == utc
