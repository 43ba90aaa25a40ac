"""The models and the migrations describe the same schema (on SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.db import unmapped_columns_left_alone
from store.models import Base


def test_migrations_build_what_the_models_describe(app):
    with app.extensions["db_engine"].connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": unmapped_columns_left_alone},
        )
        assert compare_metadata(context, Base.metadata) == []
