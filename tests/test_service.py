"""Health, OpenAPI and docs, migrations, configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, text

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


@pytest.mark.parametrize("key", ["x", "...", "changeme", "short-but-not-32-characters"])
def test_production_refuses_a_guessable_secret(tmp_path, key):
    env = {"APP_ENV": "production", "SECRET_KEY": key, "DATABASE_URL": "postgresql://u@h/db"}
    with pytest.raises(RuntimeError, match="at least 32 characters"):
        load_config(env, str(tmp_path))


@pytest.mark.parametrize("typo", ["prod", "Prod", "staging", "live"])
def test_an_unknown_app_env_is_refused_not_run_as_development(tmp_path, typo):
    with pytest.raises(RuntimeError, match="APP_ENV must be one of"):
        load_config({"APP_ENV": typo}, str(tmp_path))


def test_app_env_is_read_case_insensitively(tmp_path):
    env = {"APP_ENV": "Production", "SECRET_KEY": "k" * 40, "DATABASE_URL": "postgresql://u@h/db"}
    assert load_config(env, str(tmp_path))["APP_ENV"] == "production"


def test_the_first_hq_account_is_made_from_the_command_line(app, api, demo_org):
    runner = app.test_cli_runner()
    args = ["users", "create-hq", "Boss@Corp.example", "--name", "Boss"]
    short = runner.invoke(args=args, input="too-short\ntoo-short\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    made = runner.invoke(args=args, input="a-long-secret-pass\na-long-secret-pass\n")
    assert made.exit_code == 0, made.output
    login = api.client.post(
        "/api/v1/auth/login", json={"email": "boss@corp.example", "password": "a-long-secret-pass"}
    )
    assert login.status_code == 200 and login.get_json()["user"]["role"] == "hq"
    again = runner.invoke(args=args, input="a-long-secret-pass\na-long-secret-pass\n")
    assert again.exit_code != 0 and "Traceback" not in again.output


def test_a_failed_demo_seed_leaves_nothing_behind(tmp_path):
    from api import create_app
    from api.cli import migrate_database

    # Photos go to an S3 endpoint nobody listens on, so the demo activity fails half-way.
    broken = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'seed.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "k" * 40,
            "MEDIA_STORE": "s3",
            "S3_BUCKET": "nowhere",
            "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        }
    )
    engine = broken.extensions["db_engine"]
    migrate_database(engine)
    runner = broken.test_cli_runner()
    for _ in range(2):  # the second run tries again instead of skipping a half-seeded database
        result = runner.invoke(args=["seed-demo", "--if-empty"])
        assert result.exit_code != 0 and "nothing was kept" in result.output, result.output
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    engine.dispose()


def test_plain_alembic_migrates_the_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'alembic.db'}"
    env = {**os.environ, "DATABASE_URL": url}
    for step in (["upgrade", "head"], ["downgrade", "-1"], ["upgrade", "head"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *step], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    engine = create_engine(url)
    assert "alembic_version" in inspect(engine).get_table_names()
    engine.dispose()


def test_health_logs_why_the_blob_store_is_down_once(tmp_path, caplog):
    from api import create_app
    from api.cli import migrate_database

    broken = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'health.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "k" * 40,
            "MEDIA_STORE": "s3",
            "S3_BUCKET": "nowhere",
            "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        }
    )
    migrate_database(broken.extensions["db_engine"])
    client = broken.test_client()
    with caplog.at_level("WARNING"):
        for _ in range(3):
            body = client.get("/api/v1/health").get_json()
            assert body["status"] == "degraded" and body["storage"] == "unavailable"
    said = [r.getMessage() for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert len(said) == 1, said
    broken.extensions["db_engine"].dispose()
