"""Crash safety: the server process is killed (SIGKILL) in the middle of big pushes; nothing
partial is ever left, and the retried push succeeds."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from store.models import Inspection, Response
from tests.conftest import ANA
from tests.sync.device import random_id
from tests.sync_env import now_ms

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn on loopback against the test database."""

    def __init__(self, app):
        self.port = _free_port()
        cfg = app.config
        self.env = {
            **os.environ,
            "DATABASE_URL": cfg["DATABASE_URL"],
            "INSTANCE_PATH": cfg["INSTANCE_PATH"],
            "MEDIA_ROOT": cfg["MEDIA_ROOT"],
            "SECRET_KEY": cfg["SECRET_KEY"],
            "LOG_LEVEL": "WARNING",
        }

    def start(self):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def alive(self) -> bool:
        return getattr(self, "proc", None) is not None and self.proc.poll() is None

    def kill(self):
        # SIGKILL the whole process group: arbiter and worker die at the same instant (killing
        # the arbiter alone would orphan a worker that finishes the push).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _push_body(env, inspections=30, items=50):
    insp, resp = [], []
    for _ in range(inspections):
        iid = random_id()
        insp.append(
            {
                "id": iid,
                "template_id": env["template"],
                "site_id": env["sites"]["N-HOTEL"],
                "status": "in_progress",
                "started_at": now_ms(),
            }
        )
        for n in range(items):
            resp.append(
                {
                    "id": random_id(),
                    "inspection_id": iid,
                    "item_key": "remark",
                    "value": json.dumps(f"note {n}"),
                }
            )
    return (
        {
            "changes": {
                "inspections": {"created": insp, "updated": [], "deleted": []},
                "responses": {"created": resp, "updated": [], "deleted": []},
            },
            "last_pulled_at": 0,
        },
        [i["id"] for i in insp],
        [r["id"] for r in resp],
    )


def _post(port, token, body, timeout=30):
    # The client keys the push by its content, so a retry after a lost response is a replay.
    raw = json.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(
        "POST",
        "/api/v1/sync/push",
        body=raw,
        headers={
            "Authorization": f"Bearer {token}",
            "X-Device-Id": "crash",
            "Content-Type": "application/json",
            "Idempotency-Key": hashlib.sha256(raw.encode()).hexdigest(),
        },
    )
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_sigkill_mid_push_leaves_nothing_partial(app, env, api, db):
    token = api.login(ANA)["access_token"]
    server = Server(app)
    try:
        _crash_and_retry(server, app, env, token, db)
    finally:
        if server.alive():
            server.kill()


def _crash_and_retry(server, app, env, token, db):
    outcomes = []
    for attempt in range(4):
        body, insp_ids, resp_ids = _push_body(env)
        server.start()
        thread = threading.Thread(target=_safe_post, args=(server.port, token, body))
        thread.start()
        # Kill while the push's transaction is open (observed from the database itself, so
        # the test does not depend on timing); later attempts let it run a little further.
        _wait_for_open_transaction(app.config["DATABASE_URL"], thread)
        time.sleep(0.01 * attempt)
        server.kill()
        thread.join()
        n_insp = db.execute(
            select(func.count()).select_from(Inspection).where(Inspection.id.in_(insp_ids))
        ).scalar()
        n_resp = db.execute(
            select(func.count()).select_from(Response).where(Response.id.in_(resp_ids))
        ).scalar()
        # All or nothing: never some of the records of one push.
        assert (n_insp, n_resp) in ((0, 0), (len(insp_ids), len(resp_ids))), (n_insp, n_resp)
        outcomes.append(n_insp > 0)
        # The device retries after the server comes back: the push applies exactly once.
        server.start()
        status, data = _post(server.port, token, body)
        assert status == 200, data[:300]
        server.kill()
        assert db.execute(
            select(func.count()).select_from(Response).where(Response.id.in_(resp_ids))
        ).scalar() == len(resp_ids)
    assert not all(outcomes), "at least one kill must land before the commit"


def _wait_for_open_transaction(url: str, pusher: threading.Thread, limit: float = 20.0) -> None:
    """Return once another connection holds an open transaction (SQLite: the write lock), or
    once the push has already been answered (on a busy machine it can finish unobserved)."""
    deadline = time.time() + limit
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            while time.time() < deadline and pusher.is_alive():
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("ROLLBACK")
                except sqlite3.OperationalError:
                    return  # "database is locked": the server is inside its transaction
                time.sleep(0.001)
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            while time.time() < deadline and pusher.is_alive():
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                    "AND (query ILIKE '%INSERT INTO responses%' "
                    "OR query ILIKE '%COPY \"%responses\"%')"
                ).fetchone()[0]
                if busy:
                    return
                time.sleep(0.001)
    if pusher.is_alive():
        raise AssertionError("the push never opened a transaction")


def _safe_post(port, token, body):
    try:
        return _post(port, token, body)
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        return exc
