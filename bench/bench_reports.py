"""Compliance summary at HQ scale: 1,000,000 responses (200 sites, 10 regions, 5 templates,
one year) on PostgreSQL; the summary grouped by region x template x week, timed next to the
same figures computed by a plain GROUP BY join over the responses, in the same run, and checked
against both that join and the summary computed from the inspections without the rollups.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/bench_reports.py
"""

from __future__ import annotations

import datetime as dt
import io
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import database_url, make_app

RESPONSES = 1_000_000
PER_INSPECTION = 50
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _copy(conn, table: str, columns: list[str], rows) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buf.seek(0)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        while chunk := buf.read(1 << 20):
            cp.write(chunk)


def seed(url: str) -> None:
    """Regions, sites, templates, inspections and responses through COPY."""
    import psycopg

    rnd = random.Random(7)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        now = dt.datetime.now(dt.UTC).isoformat()
        regions = [(uuid.uuid4().hex, f"Region {i}", f"R{i}") for i in range(10)]
        _copy(conn, "regions", ["id", "name", "code", "created_at"], [(*r, now) for r in regions])
        sites = [(uuid.uuid4().hex, regions[i % 10][0], f"Site {i}", f"S{i}") for i in range(200)]
        _copy(
            conn,
            "sites",
            ["id", "region_id", "name", "code", "server_rev", "timezone"],
            [(*s, 0, "Asia/Shanghai") for s in sites],
        )
        body = '{"sections": []}'
        drafts = [(uuid.uuid4().hex, f"tpl_{i}") for i in range(5)]
        _copy(
            conn,
            "template_drafts",
            [
                "id",
                "template_key",
                "category",
                "title_zh",
                "title_en",
                "pass_threshold",
                "body",
                "latest_version",
                "archived",
                "created_at",
                "updated_at",
            ],
            [(d, k, "hygiene", k, k, 80, body, 1, False, now, now) for d, k in drafts],
        )
        versions = [(uuid.uuid4().hex, d, k) for d, k in drafts]
        _copy(
            conn,
            "templates",
            [
                "id",
                "draft_id",
                "template_key",
                "version",
                "category",
                "title_zh",
                "title_en",
                "pass_threshold",
                "body",
                "server_rev",
            ],
            [(v, d, k, 1, "hygiene", k, k, 80, body, 0) for v, d, k in versions],
        )
        inspections, responses = [], []
        for n in range(RESPONSES // PER_INSPECTION):
            iid = uuid.uuid4().hex[:16]
            site = sites[n % 200]
            tpl = versions[n % 5][0]
            when = START + dt.timedelta(minutes=rnd.randrange(365 * 24 * 60))
            fails = [rnd.random() < 0.08 for _ in range(PER_INSPECTION)]
            pct = round(100 * (PER_INSPECTION - sum(fails)) / PER_INSPECTION, 1)
            crit = fails[0]
            inspections.append(
                (
                    iid,
                    tpl,
                    site[0],
                    "approved",
                    "inspector",
                    pct,
                    PER_INSPECTION - sum(fails),
                    PER_INSPECTION,
                    pct >= 80 and not crit,
                    crit,
                    when.isoformat(),
                    0,
                    True,
                    False,
                )
            )
            for k, failed in enumerate(fails):
                responses.append(
                    (
                        uuid.uuid4().hex[:16],
                        iid,
                        f"i{k:02d}",
                        '"no"' if failed else '"yes"',
                        failed,
                        0.0 if failed else 1.0,
                        site[0],
                        0,
                    )
                )
        _copy(
            conn,
            "inspections",
            [
                "id",
                "template_id",
                "site_id",
                "status",
                "inspector_id",
                "score_percent",
                "score",
                "max_score",
                "passed",
                "critical_failed",
                "completed_received_at",
                "server_rev",
                "media_complete",
                "has_conflicts",
            ],
            inspections,
        )
        _copy(
            conn,
            "responses",
            [
                "id",
                "inspection_id",
                "item_key",
                "value",
                "failed",
                "item_score",
                "site_id",
                "server_rev",
            ],
            responses,
        )
        conn.commit()
        conn.execute("ANALYZE")


BASELINE = """
SELECT s.region_id, t.template_key, date_trunc('week', i.completed_received_at) AS week,
       count(DISTINCT i.id) AS completed,
       avg(r.item_score) * 100 AS average_score,
       count(DISTINCT i.id) FILTER (WHERE i.passed) AS passed,
       count(DISTINCT i.id) FILTER (WHERE i.critical_failed) AS critical
FROM responses r
JOIN inspections i ON i.id = r.inspection_id
JOIN sites s ON s.id = i.site_id
JOIN templates t ON t.id = i.template_id
WHERE i.completed_received_at >= %(start)s AND i.completed_received_at < %(end)s
GROUP BY 1, 2, 3
"""


def fill_rollups(app) -> int:
    """The daily rollups from the COPYed inspections, as the 0002 migration backfills them."""
    from sqlalchemy import text

    from store import rollups

    with app.extensions["db_sessions"]() as session:
        cells = rollups.rebuild(session)
        session.commit()
    with app.extensions["db_engine"].connect() as conn:
        conn.execute(text("ANALYZE inspection_daily"))
        conn.execute(text("ANALYZE region_daily"))
        conn.commit()
    return cells


def check(rows, scratch, plain) -> None:
    """Exit unless the rollup answer equals the from-scratch one and the plain join's."""
    if rows != scratch:
        sys.exit("the rollup answer differs from the one computed from the inspections")
    theirs = {}
    for region, template, week, completed, average, passed, critical in plain:
        year, number, _ = week.astimezone(dt.UTC).isocalendar()
        theirs[(region, template, f"{year}-W{number:02d}")] = (completed, passed, critical, average)
    ours = {(r["region"], r["template"], r["week"]): r for r in rows}
    if set(ours) != set(theirs):
        sys.exit("the rollup answer and the plain join have different groups")
    for key, r in ours.items():
        completed, passed, critical, average = theirs[key]
        # The join averages the answers (0 or 1, 50 per inspection); we round the mean score
        # percent to one decimal, so the two agree to within that rounding.
        same = (
            r["inspections_completed"] == completed
            and r["pass_rate"] == round(passed / completed, 3)
            and r["critical_failures"] == critical
            and abs(r["average_score"] - average) <= 0.05 + 1e-9
        )
        if not same:
            sys.exit(f"group {key} differs: ours {r}, plain join {theirs[key]}")


def main() -> None:
    url = database_url()
    if not url.startswith("postgresql"):
        sys.exit("this benchmark needs PostgreSQL: set BENCH_DATABASE_URL")
    app = make_app(url)
    t0 = time.perf_counter()
    seed(app.config["DATABASE_URL"])
    print(f"seeded {RESPONSES:,} responses in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    cells = fill_rollups(app)
    print(f"filled the daily rollups ({cells:,} cells) in {time.perf_counter() - t0:.2f} s")
    end = START + dt.timedelta(days=365)
    from inspections import reports
    from sync.scope import Scope

    scope = Scope(user_id="hq", role="hq", region_id=None, site_ids=None)
    factory = app.extensions["db_sessions"]
    ours, base = [], []
    for _ in range(7):
        with factory() as session:
            start = time.perf_counter()
            rows = reports.compliance(
                session, scope, START, end, ["region", "template", "week"], {}, end
            )
            ours.append(time.perf_counter() - start)
        with app.extensions["db_engine"].connect() as conn:
            start = time.perf_counter()
            plain = conn.exec_driver_sql(BASELINE, {"start": START, "end": end}).all()
            base.append(time.perf_counter() - start)
    o, b = statistics.median(ours), statistics.median(base)
    print(f"groups: ours {len(rows)}, plain join {len(plain)}")
    with factory() as session:
        scratch = reports.compliance(
            session, scope, START, end, ["region", "template", "week"], {}, end, use_rollups=False
        )
    check(rows, scratch, plain)
    print("same figures as from the inspections and as the plain join")
    print(
        f"compliance region x template x week over {RESPONSES:,} responses: "
        f"ours {o * 1000:.1f} ms (target <= 50 ms), plain GROUP BY join {b * 1000:.1f} ms, "
        f"speed-up {b / o:.1f}x (target >= 10x)"
    )


if __name__ == "__main__":
    main()
