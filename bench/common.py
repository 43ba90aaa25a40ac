"""Shared benchmark plumbing: a real HTTP server on loopback, a seeded database, timing."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server

from api import create_app
from api.cli import migrate_database
from api.config import DEMO_PASSWORD
from api.security import hash_password
from org import demo


def database_url() -> str:
    """BENCH_DATABASE_URL, else TEST_DATABASE_URL, else a fresh SQLite file."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    return url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"


def make_app(url: str):
    """A migrated app with the demo organisation, on an emptied database."""
    from sqlalchemy import text

    from store.models import Base

    instance = tempfile.mkdtemp()
    app = create_app(
        {
            "DATABASE_URL": url,
            "INSTANCE_PATH": instance,
            "MEDIA_ROOT": f"{instance}/media",
            "SECRET_KEY": "bench-" + "x" * 40,
            "LOG_LEVEL": "WARNING",
            "SYNC_PUSH_MAX_RECORDS": 100_000,
        }
    )
    engine = app.extensions["db_engine"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    migrate_database(engine)
    with app.app_context():
        from api import db

        demo.seed(db.session(), hash_password, DEMO_PASSWORD)
        db.commit()
    return app


class Server:
    """The app served over real HTTP on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median seconds over `repeat` runs, and all the runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def report(name: str, ours: float, baseline: float, target: float | None = None) -> None:
    """One line: our time, the baseline's, the ratio (and the target when there is one)."""
    ratio = ours / baseline if baseline else float("inf")
    goal = f"  target <= {target}x" if target else ""
    print(
        f"{name:<48} ours {ours * 1000:9.1f} ms   baseline {baseline * 1000:9.1f} ms   "
        f"ratio {ratio:5.2f}x{goal}",
        flush=True,
    )
