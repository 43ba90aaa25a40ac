"""Engine and session factory; nothing is created at import time."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import weakref
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Engine,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool


def normalise_url(url: str) -> str:
    """Pick our driver for a plain postgresql:// URL (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def json_text(value: Any) -> str:
    """JSON columns' text, by orjson (a push's audit entries and col_revs in a fraction of the
    standard library's time); what orjson cannot write (integers beyond 64 bits) by json."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


# libpq's TCP settings for a server that vanished (host down, network cut): it answers
# nothing, not even a reset, and a request waiting on it would hang for the kernel's
# retransmission timeout (about 15 minutes). Keepalive probes find a silent peer within a
# minute (30 s idle, then 3 probes 10 s apart); data it leaves unacknowledged for 30 s ends
# the connection. The request then fails as the database being unavailable (503).
TCP_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def make_engine(
    url: str, *, statement_timeout_ms: int = 0, idle_in_transaction_ms: int = 0, **kwargs: Any
) -> Engine:
    """Create an engine with the per-backend settings sync correctness relies on. On
    PostgreSQL, optional server-side limits (0 = none): a statement running or waiting for a
    lock longer than `statement_timeout_ms` is cancelled, and a session left idle inside a
    transaction longer than `idle_in_transaction_ms` is ended, releasing its locks (a frozen
    worker must not hold the rev counter's lock, and with it every push, forever)."""
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, in_memory=url in ("sqlite://", "sqlite:///:memory:"))
        return engine
    options = f"-c statement_timeout={int(statement_timeout_ms)}"
    options += f" -c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)}"
    kwargs.setdefault("connect_args", {"connect_timeout": 5, "options": options, **TCP_LIVENESS})
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


# Seconds a pooled PostgreSQL connection may sit unused before its next checkout pings it (as
# PgBouncer's server_check_delay). A connection used more recently either worked then or failed
# and was dropped, so any outage longer than this is still caught before a request runs.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a connection at checkout only if it sat idle in the pool: a restarted or vanished
    server is noticed before a request uses it (the pool connects afresh), without a round
    trip per request while the pool is busy (pool_pre_ping pings every checkout)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as err:
            # The pool drops this connection and checks out another (or connects anew).
            raise DisconnectionError(f"pooled connection lost: {err}") from err


def without_statement_timeout(connection: Any) -> None:
    """For long maintenance work (migrations, purges) in this transaction (PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")


# Pages of WAL a commit may leave before SQLite checkpoints inside that commit (its default is
# 1000). Requests checkpoint after their response instead (`checkpoint`); this is the backstop
# for writers that do not (the command line) and for checkpoints that fall behind.
WAL_AUTOCHECKPOINT_PAGES = 4000
# Rows changed since the last checkpoint that make the next response checkpoint: a big push at
# once, small writes together (a checkpoint per small write would double their fsyncs).
CHECKPOINT_AFTER_ROWS = 1000


def _configure_sqlite(engine: Engine, in_memory: bool = False) -> None:
    """WAL, foreign keys, write transactions that take the lock up front, and a count of the
    rows commits changed (see `checkpoint_due`)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy drive BEGIN itself so it can be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # SQLite has one writer; taking the write lock at BEGIN avoids the deadlock-prone
        # read-then-upgrade, and makes commit order equal rev order trivially.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["changes_at_begin"] = conn.connection.driver_connection.total_changes

    @event.listens_for(engine, "commit")
    def _on_commit(conn: Any) -> None:
        changes = conn.connection.driver_connection.total_changes
        changed = changes - conn.info.pop("changes_at_begin", changes)
        if changed and not in_memory:
            _UNCHECKPOINTED[engine] = _UNCHECKPOINTED.get(engine, 0) + changed


# SQLite engines -> rows their commits changed since their last checkpoint came due. A count
# lost to two threads committing at once only delays a checkpoint.
_UNCHECKPOINTED: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def checkpoint_due(engine: Engine) -> bool:
    """Whether commits changed CHECKPOINT_AFTER_ROWS rows or more since the last checkpoint
    (SQLite file databases); if so the caller runs `checkpoint`, and no other caller is told."""
    if _UNCHECKPOINTED.get(engine, 0) < CHECKPOINT_AFTER_ROWS:
        return False
    _UNCHECKPOINTED[engine] = 0
    return True


def checkpoint(engine: Engine) -> None:
    """Copy the WAL back into the SQLite database file, waiting for no one (PASSIVE). Run after
    a request's response is out: left to SQLite, the commit that fills the WAL past its limit
    does it, and the device pushing then waits for pages other requests wrote."""
    _UNCHECKPOINTED[engine] = 0
    try:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()
    except (sqlite3.Error, SQLAlchemyError):
        # Housekeeping only: the next checkpoint, or SQLite's own at the backstop, catches up.
        logging.getLogger(__name__).warning("WAL checkpoint failed", exc_info=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to the engine."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def is_postgres(engine_or_session: Engine | Session) -> bool:
    """True when talking to PostgreSQL."""
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    return bind.dialect.name == "postgresql"


def one_of(session: Session, column: Any, values: Any) -> ColumnElement[bool]:
    """`column IN values` with one parameter (an array on PostgreSQL, a JSON list read by
    json_each on SQLite), because a statement with thousands of placeholders costs the driver
    more to prepare than the database to run."""
    values = list(values)
    if is_postgres(session):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    listed = func.json_each(bindparam(None, orjson.dumps(values).decode()))
    return column.in_(select(literal_column("value")).select_from(listed))


def unmapped_columns_left_alone(
    obj: Any, name: str, type_: str, reflected: bool, compare: Any
) -> bool:
    """For Alembic's autogenerate: leave alone what the database keeps without the models
    knowing, the wire documents of migration 0003 (`sync_doc`)."""
    return not (type_ == "column" and name == "sync_doc" and reflected and compare is None)
