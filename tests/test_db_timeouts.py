"""PostgreSQL limits for requests: a push stuck behind the rev counter's lock gets 503 instead of
hanging, and a session left idle inside a transaction (a frozen worker) is ended, so its lock
cannot stop every push."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api import create_app
from tests.conftest import ANA, TEST_DATABASE_URL
from tests.sync.device import random_id
from tests.sync_env import new_inspection

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="server-side statement and idle-transaction limits are PostgreSQL's",
)


@pytest.fixture
def limited_app(app, tmp_path):
    """A second app on the test database with short limits."""
    limited = create_app(
        {
            "DATABASE_URL": app.config["DATABASE_URL"],
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": app.config["SECRET_KEY"],
            "TESTING": True,
            "DB_STATEMENT_TIMEOUT_MS": 300,
            "DB_IDLE_IN_TRANSACTION_MS": 500,
        }
    )
    yield limited
    limited.extensions["db_engine"].dispose()


def _push(client, headers, env):
    body = {
        "changes": {
            "inspections": {
                "created": [
                    {
                        "id": random_id(),
                        "template_id": env["template"],
                        "site_id": env["sites"]["N-HOTEL"],
                        "status": "in_progress",
                    }
                ],
                "updated": [],
                "deleted": [],
            }
        },
        "last_pulled_at": None,
    }
    return client.post("/api/v1/sync/push", headers=headers, json=body)


def test_a_push_behind_a_held_counter_lock_gets_503_then_goes_through(
    limited_app, env, device, api
):
    headers = {**api.headers(ANA), "X-Device-Id": "timeouts"}
    client = limited_app.test_client()
    url = limited_app.config["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as holder:
        holder.execute("SELECT value FROM sync_counter WHERE id = 1 FOR UPDATE")
        start = time.monotonic()
        stuck = _push(client, headers, env)
        waited = time.monotonic() - start
        holder.rollback()
    assert stuck.status_code == 503, stuck.get_json()
    assert stuck.get_json()["reason"] == "database_busy" and stuck.headers["Retry-After"]
    assert waited < 10
    assert _push(client, headers, env).status_code == 200


def test_a_session_idle_in_a_transaction_is_ended_and_frees_the_lock(limited_app, env, device, api):
    # What a worker frozen mid-push would leave: the counter row locked, nothing running.
    with limited_app.extensions["db_engine"].connect() as frozen:
        frozen.execute(text("SELECT value FROM sync_counter WHERE id = 1 FOR UPDATE"))
        time.sleep(1.0)
        phone = device(ANA)
        phone.sync()
        new_inspection(phone, env)
        # Through the main test app (default limits): it goes through once the frozen
        # session is ended, well before its own 30 s statement limit.
        start = time.monotonic()
        phone.sync()
        assert time.monotonic() - start < 10
        assert phone.db["inspections"]
        with pytest.raises(DBAPIError) as ended:
            frozen.execute(text("SELECT 1"))
        assert isinstance(ended.value.orig, psycopg.errors.IdleInTransactionSessionTimeout)
