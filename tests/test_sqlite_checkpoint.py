"""SQLite: a request after which enough rows changed copies the WAL into the database file once
its response is out, so no push waits for a checkpoint inside its commit (SQLite's own, at a
page limit, is the backstop)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from api import create_app
from api.cli import migrate_database
from api.config import DEMO_PASSWORD
from api.security import hash_password
from org import demo
from store.db import (
    CHECKPOINT_AFTER_ROWS,
    WAL_AUTOCHECKPOINT_PAGES,
    checkpoint,
    checkpoint_due,
)
from tests.conftest import app_config
from tests.sync.device import random_id
from tests.sync_env import now_ms


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    """An app of its own on a SQLite file (this is SQLite's WAL, whatever TEST_DATABASE_URL)."""
    app = create_app(app_config(f"sqlite:///{tmp_path / 'wal.db'}", tmp_path))
    engine = app.extensions["db_engine"]
    migrate_database(engine)
    with app.app_context():
        from api import db

        demo.seed(db.session(), hash_password, DEMO_PASSWORD)
        db.commit()
    checkpoint(engine)
    yield app
    engine.dispose()


def _in_database_file(tmp_path: Path, sql: str, *args: Any) -> list[tuple]:
    """Rows as the database file alone holds them: a copy of it without its WAL."""
    copy = tmp_path / "file-only.db"
    shutil.copyfile(tmp_path / "wal.db", copy)
    conn = sqlite3.connect(copy)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
        copy.unlink()


def _login(client: Any) -> dict[str, str]:
    resp = client.post(
        "/api/v1/auth/login",
        json={"email": "ana.inspector@demo.example", "password": DEMO_PASSWORD},
    )
    assert resp.status_code == 200, resp.json
    return {"Authorization": f"Bearer {resp.json['access_token']}", "X-Device-Id": "phone-1"}


def _push_inspections(client: Any, headers: dict, count: int) -> list[str]:
    """New inspections in one push; their ids."""
    pulled = client.get("/api/v1/sync/pull?last_pulled_at=0", headers=headers).json
    template = pulled["changes"]["templates"]["updated"][0]
    site = pulled["changes"]["sites"]["updated"][0]
    created = [
        {
            "id": random_id(),
            "template_id": template["id"],
            "site_id": site["id"],
            "status": "in_progress",
            "started_at": now_ms(),
        }
        for _ in range(count)
    ]
    body = {
        "changes": {"inspections": {"created": created, "updated": [], "deleted": []}},
        "last_pulled_at": pulled["timestamp"],
    }
    resp = client.post("/api/v1/sync/push", json=body, headers=headers)
    assert resp.status_code == 200, resp.json
    resp.close()
    return [c["id"] for c in created]


def _file_count(tmp_path: Path, ids: list[str]) -> int:
    marks = ", ".join("?" for _ in ids)
    sql = f"SELECT count(*) FROM inspections WHERE id IN ({marks})"
    return _in_database_file(tmp_path, sql, *ids)[0][0]


def test_a_big_push_reaches_the_database_file_once_its_response_is_out(sqlite_app, tmp_path):
    client = sqlite_app.test_client()
    headers = _login(client)
    small = _push_inspections(client, headers, 1)
    # One row: it waits in the WAL for more (SQLite's own limit is far away).
    assert _file_count(tmp_path, small) == 0
    big = _push_inspections(client, headers, CHECKPOINT_AFTER_ROWS)
    # The big push made the checkpoint due: both pushes are in the file after its response.
    assert _file_count(tmp_path, small + big) == 1 + CHECKPOINT_AFTER_ROWS


def test_a_checkpoint_comes_due_with_the_rows_commits_changed(sqlite_app):
    engine = sqlite_app.extensions["db_engine"]
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM inspections"))
        conn.execute(text("UPDATE sites SET name = name || '.'"))
    with engine.begin() as conn:
        sites = len(conn.execute(text("SELECT id FROM sites")).all())
    assert 0 < sites < CHECKPOINT_AFTER_ROWS
    assert checkpoint_due(engine) is False  # a few rows: not yet
    rows = [{"n": n} for n in range(CHECKPOINT_AFTER_ROWS - sites)]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
        conn.execute(text("INSERT INTO scratch (n) VALUES (:n)"), rows[:-1])
    assert checkpoint_due(engine) is False  # one row short
    with engine.begin() as conn:
        conn.execute(text("SELECT n FROM scratch"))  # reads count for nothing
        conn.execute(text("INSERT INTO scratch (n) VALUES (0)"))
    assert checkpoint_due(engine) is True
    assert checkpoint_due(engine) is False  # taken by whoever checkpoints


def test_connections_leave_checkpoints_to_requests_up_to_the_backstop(sqlite_app):
    raw = sqlite_app.extensions["db_engine"].raw_connection()
    try:
        (pages,) = raw.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()
    finally:
        raw.close()
    assert pages == WAL_AUTOCHECKPOINT_PAGES
