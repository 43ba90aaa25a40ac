"""The request's database session and the unit of work: commits go through here (except a
PostgreSQL pull, which sends its COMMIT with its bookkeeping: sync/pull_pg.py)."""

from __future__ import annotations

from functools import partial

from flask import Flask, Response, current_app, g
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from store.db import checkpoint, checkpoint_due, make_engine, make_session_factory
from sync import revs


def init_app(app: Flask) -> None:
    """Create the engine and session factory for this app."""
    engine = make_engine(
        app.config["DATABASE_URL"],
        statement_timeout_ms=app.config["DB_STATEMENT_TIMEOUT_MS"],
        idle_in_transaction_ms=app.config["DB_IDLE_IN_TRANSACTION_MS"],
    )
    factory = make_session_factory(engine)
    revs.install(factory)
    app.extensions["db_engine"] = engine
    app.extensions["db_sessions"] = factory
    app.teardown_appcontext(_close)
    if engine.dialect.name == "sqlite":
        app.after_request(_checkpoint_after_response)


def sessions() -> sessionmaker[Session]:
    """The app's session factory."""
    return current_app.extensions["db_sessions"]


def session() -> Session:
    """The session of this request, opened on first use."""
    if "db" not in g:
        g.db = sessions()()
    return g.db


def commit() -> None:
    """Stamp revs (taking the counter lock last) and commit the request's transaction."""
    db = session()
    revs.stamp(db)
    db.commit()


def _checkpoint_after_response(response: Response) -> Response:
    """SQLite: when requests have written enough, copy the WAL into the database once this
    response has been sent, so no device waits for the checkpoint inside its push's commit."""
    engine = current_app.extensions["db_engine"]
    if checkpoint_due(engine):
        response.call_on_close(partial(checkpoint, engine))
    return response


def _close(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is None:
        return
    try:
        db.rollback()
    except DBAPIError:
        # The connection died under the request (database restarted): the error handler has
        # answered 503 already; drop the connection instead of turning that into a 500.
        db.invalidate()
        return
    db.close()
