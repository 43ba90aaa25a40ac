"""Shared fixtures: a real database (SQLite file, or PostgreSQL via TEST_DATABASE_URL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from api import create_app
from api.cli import migrate_database
from api.config import DEMO_PASSWORD
from api.extensions import limiter
from org import demo
from store.db import normalise_url
from store.models import Base, SyncCounter

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
pytest_plugins = ["tests.sync_env", "tests.authz_world"]


def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL when CI gives one, else a SQLite file of this run."""
    if TEST_DATABASE_URL:
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def app_config(url: str, instance: Any) -> dict[str, Any]:
    """A test app's settings: its database, and its instance folder for media."""
    return {
        "DATABASE_URL": url,
        "INSTANCE_PATH": str(instance),
        "MEDIA_ROOT": str(instance / "media"),
        "SECRET_KEY": "test-secret-key-with-enough-entropy-0123456789",
        "TESTING": True,
    }


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the run, migrated from empty with the real migrations."""
    instance = tmp_path_factory.mktemp("instance")
    application = create_app(app_config(database_url(tmp_path_factory), instance))
    engine = application.extensions["db_engine"]
    _drop_everything(engine)
    migrate_database(engine)
    yield application
    engine.dispose()


def _drop_everything(engine: Any) -> None:
    """Start from an empty database so the migrations are tested from scratch."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the app starts and ends with empty tables."""
    yield
    if "app" not in request.fixturenames:
        return
    application: Flask = request.getfixturevalue("app")
    with application.extensions["db_engine"].begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != SyncCounter.__tablename__:
                conn.execute(table.delete())
    limiter.reset()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on loopback (threaded), for clients outside Python."""
    import threading

    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client."""
    return app.test_client()


@pytest.fixture(scope="session")
def _reader_engine(app: Flask) -> Iterator[Any]:
    """Autocommit connections: each check reads fresh data and never holds a lock that
    would block the app under test (SQLite has one writer)."""
    url = app.config["DATABASE_URL"]
    engine = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def db(_reader_engine: Any) -> Iterator[Any]:
    """A session outside any request, for arranging and checking data."""
    session = Session(bind=_reader_engine, expire_on_commit=False)
    yield session
    session.close()


@pytest.fixture
def demo_org(app: Flask) -> dict[str, str]:
    """The demo organisation; returns email -> user id."""
    with app.app_context():
        from api import db as api_db

        users = demo.seed(api_db.session(), _cached_hash, DEMO_PASSWORD)
        api_db.commit()
    return users


_HASHES: dict[str, str] = {}


# The seeded accounts' hashes are argon2id at the library's cheapest cost: verification reads
# the cost from the stored hash, and at the production cost (about 150 ms a login on a CI
# machine) the suite's logins took a quarter of its time. The production hasher itself is
# checked in test_auth.py.
_TEST_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)


def _cached_hash(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = _TEST_HASHER.hash(password)
    return _HASHES[password]


class Api:
    """A small client that signs in once and sends JSON."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.tokens: dict[str, dict] = {}

    def login(self, email: str, password: str = DEMO_PASSWORD) -> dict:
        resp = self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert resp.status_code == 200, resp.get_json()
        self.tokens[email] = resp.get_json()
        return self.tokens[email]

    def headers(self, email: str, **extra: str) -> dict[str, str]:
        if email not in self.tokens:
            self.login(email)
        return {"Authorization": f"Bearer {self.tokens[email]['access_token']}", **extra}

    def call(self, method: str, path: str, email: str | None = None, **kwargs: Any):
        headers = kwargs.pop("headers", {})
        if email:
            headers = {**self.headers(email), **headers}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def get(self, path: str, email: str | None = None, **kw: Any):
        return self.call("GET", path, email, **kw)

    def post(self, path: str, email: str | None = None, **kw: Any):
        return self.call("POST", path, email, **kw)

    def patch(self, path: str, email: str | None = None, **kw: Any):
        return self.call("PATCH", path, email, **kw)

    def delete(self, path: str, email: str | None = None, **kw: Any):
        return self.call("DELETE", path, email, **kw)

    def new_user(self, email: str, password: str, role: str = "inspector") -> dict:
        """An account HQ makes through the API (hashed at the production cost), signed in."""
        made = self.post(
            "/users",
            HQ_EMAIL,
            json={"email": email, "name": email, "role": role, "password": password},
        )
        assert made.status_code == 201, made.get_json()
        self.login(email, password)
        return made.get_json()


@pytest.fixture
def api(client: FlaskClient) -> Api:
    """JSON client with per-account sign-in."""
    return Api(client)


HQ_EMAIL = "hq@demo.example"
NORTH = "north.manager@demo.example"
SOUTH = "south.manager@demo.example"
ANA = "ana.inspector@demo.example"
BEN = "ben.inspector@demo.example"
