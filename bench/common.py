"""Shared benchmark plumbing: a real HTTP server on loopback, a seeded database, timing."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The app under gunicorn (as in production) on 127.0.0.1, in a child process."""

    def __init__(self, app: Any, workers: int = 1) -> None:
        self.port = free_port()
        cfg = app.config
        self.env = {
            **os.environ,
            "DATABASE_URL": cfg["DATABASE_URL"],
            "INSTANCE_PATH": cfg["INSTANCE_PATH"],
            "MEDIA_ROOT": cfg["MEDIA_ROOT"],
            "SECRET_KEY": cfg["SECRET_KEY"],
            "LOG_LEVEL": "WARNING",
            "SYNC_PUSH_MAX_RECORDS": str(cfg["SYNC_PUSH_MAX_RECORDS"]),
            "LOGIN_RATE_LIMIT": "1000 per minute",
        }
        self.cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            # Threaded workers keep connections alive, as a load balancer in front would.
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--log-level",
            "warning",
            "wsgi:app",
        ]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(self.cmd, cwd=root, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median seconds over `repeat` runs, and all the runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def report(
    name: str,
    ours: float,
    baseline: float,
    target: float | None = None,
    pairs: tuple[list[float], list[float]] | None = None,
) -> None:
    """One line: our time, the baseline's, the ratio (and the target when there is one).
    `pairs`: our runs and the baseline's, run alternately; the median of each run's ratio to
    the baseline run beside it is printed too, as a machine whose speed drifts during the
    benchmark moves the two medians apart but not the ratios of neighbouring runs."""
    ratio = ours / baseline if baseline else float("inf")
    goal = f"  target <= {target}x" if target else ""
    paired = ""
    if pairs:
        each = statistics.median(o / b for o, b in zip(*pairs, strict=True))
        paired = f"  (run by run: {each:.2f}x)"
    print(
        f"{name:<48} ours {ours * 1000:9.1f} ms   baseline {baseline * 1000:9.1f} ms   "
        f"ratio {ratio:5.2f}x{goal}{paired}",
        flush=True,
    )
