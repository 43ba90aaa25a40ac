"""A database lost mid-request answers 503 + Retry-After in the envelope, never a 500, even
where the sync engine talks to the driver directly; a duplicate row from the driver is 409."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api import create_app


@pytest.fixture
def broken_app(tmp_path):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "test-secret-key-with-enough-entropy-0123456789",
            "TESTING": True,
        }
    )
    from api import db

    def driver_lost():
        raise psycopg.OperationalError("consuming input failed: server closed the connection")

    def driver_duplicate():
        raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")

    def lost_with_dead_teardown():
        session = db.session()
        session.execute(text("SELECT 1"))

        def dead_rollback():
            raise OperationalError(
                "ROLLBACK", {}, psycopg.OperationalError("the connection is lost")
            )

        session.rollback = dead_rollback
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def session_ended():
        raise psycopg.errors.IdleInTransactionSessionTimeout(
            "terminating connection due to idle-in-transaction timeout"
        )

    def other_internal():
        raise psycopg.errors.InternalError_("cache lookup failed")

    for view in (
        driver_lost,
        driver_duplicate,
        lost_with_dead_teardown,
        session_ended,
        other_internal,
    ):
        app.add_url_rule(f"/t/{view.__name__}", view_func=view)
    return app


def test_driver_errors_map_to_503_and_409(broken_app):
    client = broken_app.test_client()
    lost = client.get("/t/driver_lost")
    assert lost.status_code == 503 and lost.headers["Retry-After"]
    assert lost.get_json()["reason"] == "database_unavailable"
    assert client.get("/t/driver_duplicate").get_json()["reason"] == "integrity_conflict"


def test_a_dead_connection_at_teardown_keeps_the_503(broken_app):
    resp = broken_app.test_client().get("/t/lost_with_dead_teardown")
    assert resp.status_code == 503 and resp.get_json()["reason"] == "database_unavailable"


def test_an_ended_idle_session_is_503_other_internal_errors_500(broken_app):
    client = broken_app.test_client()
    ended = client.get("/t/session_ended")
    assert ended.status_code == 503 and ended.get_json()["reason"] == "database_unavailable"
    other = client.get("/t/other_internal")
    assert other.status_code == 500 and other.get_json()["code"] == 500
