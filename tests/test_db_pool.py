"""PostgreSQL pool: a connection that sat idle is pinged before a request uses it, so a server
that restarted or dropped it costs no request; a busy connection is not pinged; and every
connection's socket watches for a server that went silent."""

from __future__ import annotations

import os
import socket
import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from store.db import PING_AFTER_IDLE_SECONDS, make_engine, normalise_url
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="the idle-connection ping is PostgreSQL's pool setting",
)


@pytest.fixture
def engine():
    engine = make_engine(TEST_DATABASE_URL, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(pid: int) -> None:
    url = normalise_url(TEST_DATABASE_URL).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The server ends the backend asynchronously; wait until it is gone.
    deadline = time.monotonic() + 5
    with psycopg.connect(url, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is None:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} did not end")


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(engine):
    first = _backend(engine)
    _terminate(first)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
    # The only pooled connection is dead; the checkout's ping finds out and connects anew.
    second = _backend(engine)
    assert second != first


def test_a_busy_connection_is_used_without_a_ping(engine):
    first = _backend(engine)
    _terminate(first)
    # Checked in moments ago: no ping, so the dead connection surfaces as a disconnect, which
    # the API answers with 503 + Retry-After, and the pool drops it for the next request.
    with pytest.raises(OperationalError) as lost:
        _backend(engine)
    assert lost.value.connection_invalidated
    assert _backend(engine) != first


def test_a_connection_probes_a_silent_server_and_drops_one_that_stops_acknowledging(engine):
    """The socket itself carries the settings (TCP_LIVENESS): keepalive probes after 30 s
    idle, 3 of them 10 s apart, and 30 s at most for data to be acknowledged."""
    with engine.connect() as conn:
        fd = conn.connection.driver_connection.fileno()
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
        finally:
            sock.close()  # the duplicate: the connection's own descriptor stays open
