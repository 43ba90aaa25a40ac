"""Alembic environment: runs on a connection handed in, or on sqlalchemy.url, or on
DATABASE_URL (the plain `alembic` command, e.g. `alembic downgrade -1`)."""

import os

from alembic import context

from store.db import make_engine, unmapped_columns_left_alone
from store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate on the given connection (tests, the app) or a fresh engine (CLI)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "Set DATABASE_URL to the database to migrate (or run `flask --app wsgi migrate`)."
        )
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=unmapped_columns_left_alone,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
