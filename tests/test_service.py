"""Health, OpenAPI and docs, migrations, configuration."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from api.config import load_config
from store.models import Base


def test_health(api, demo_org):
    assert api.get("/health").get_json() == {"status": "ok", "database": "ok", "storage": "ok"}


def test_openapi_document_and_docs(api):
    spec = api.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/sites",
        "/api/v1/sync/pull",
        "/api/v1/sync/push",
        "/api/v1/templates",
    ):
        assert path in paths, path
    for path, ops in paths.items():
        for method, op in ops.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert op.get("summary"), (method, path)
    assert api.get("/docs").status_code == 200


def test_migrations_create_every_model_table(app):
    engine = app.extensions["db_engine"]
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_production_requires_a_secret_and_a_server_database(tmp_path):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        load_config({"APP_ENV": "production"}, str(tmp_path))
    with pytest.raises(RuntimeError, match="PostgreSQL"):
        load_config({"APP_ENV": "production", "SECRET_KEY": "x" * 40}, str(tmp_path))
    cfg = load_config(
        {"APP_ENV": "production", "SECRET_KEY": "x" * 40, "DATABASE_URL": "postgresql://u@h/db"},
        str(tmp_path),
    )
    assert cfg["DATABASE_URL"] == "postgresql://u@h/db"


def test_development_secret_is_generated_once_and_kept(tmp_path):
    first = load_config({}, str(tmp_path))["SECRET_KEY"]
    assert len(first) >= 32
    assert load_config({}, str(tmp_path))["SECRET_KEY"] == first
