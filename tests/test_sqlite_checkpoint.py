"""SQLite: a request that wrote copies the WAL into the database file after its response, so no
push waits for a checkpoint inside its commit (SQLite's own, at a page limit, is the backstop)."""

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
from store.db import WAL_AUTOCHECKPOINT_PAGES, checkpoint, wal_written
from tests.sync.device import random_id
from tests.sync_env import now_ms


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    """An app of its own on a SQLite file (this is SQLite's WAL, whatever TEST_DATABASE_URL)."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'wal.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "MEDIA_ROOT": str(tmp_path / "media"),
            "SECRET_KEY": "test-secret-key-with-enough-entropy-0123456789",
            "TESTING": True,
        }
    )
    engine = app.extensions["db_engine"]
    migrate_database(engine)
    with app.app_context():
        from api import db

        demo.seed(db.session(), hash_password, DEMO_PASSWORD)
        db.commit()
    checkpoint(engine)
    wal_written(engine)
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


def test_a_push_reaches_the_database_file_once_its_response_is_out(sqlite_app, tmp_path):
    client = sqlite_app.test_client()
    headers = _login(client)
    pulled = client.get("/api/v1/sync/pull?last_pulled_at=0", headers=headers).json
    template = pulled["changes"]["templates"]["updated"][0]
    site = pulled["changes"]["sites"]["updated"][0]
    iid = random_id()
    inspection = {
        "id": iid,
        "template_id": template["id"],
        "site_id": site["id"],
        "status": "in_progress",
        "started_at": now_ms(),
    }
    body = {
        "changes": {"inspections": {"created": [inspection], "updated": [], "deleted": []}},
        "last_pulled_at": pulled["timestamp"],
    }
    resp = client.post("/api/v1/sync/push", json=body, headers=headers)
    assert resp.status_code == 200, resp.json
    resp.close()
    # A few pages of WAL: far below SQLite's own limit, so only the request's checkpoint can
    # have put the inspection into the file.
    stored = _in_database_file(tmp_path, "SELECT status FROM inspections WHERE id = ?", iid)
    assert stored == [("in_progress",)]


def test_only_transactions_that_changed_rows_ask_for_a_checkpoint(sqlite_app):
    engine = sqlite_app.extensions["db_engine"]
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM inspections"))
    assert wal_written(engine) is False
    with engine.begin() as conn:
        conn.execute(text("UPDATE sites SET name = name || '.'"))
    assert wal_written(engine) is True
    assert wal_written(engine) is False  # the note is taken by whoever checkpoints


def test_connections_leave_checkpoints_to_requests_up_to_the_backstop(sqlite_app):
    raw = sqlite_app.extensions["db_engine"].raw_connection()
    try:
        (pages,) = raw.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()
    finally:
        raw.close()
    assert pages == WAL_AUTOCHECKPOINT_PAGES
