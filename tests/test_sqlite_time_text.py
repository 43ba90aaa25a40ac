"""The 0006 migration rewrites SQLite times stored with a zone suffix (by the sync batch insert
before its fix) in SQLAlchemy's format, so they compare right against period bounds."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from store.models import AuditEvent, Inspection, Region

UTC = dt.UTC
MAY_31 = dt.datetime(2026, 5, 31, tzinfo=UTC)
JUNE_1 = dt.datetime(2026, 6, 1, tzinfo=UTC)
# More audit rows than the migration's batch, so it pages through them.
MANY = 5001


def _engine_at(path: Any, revision: str) -> Any:
    """A SQLite file migrated up to `revision` (these rewrites are SQLite's; PostgreSQL has
    timestamptz)."""
    from store.db import make_engine

    engine = make_engine(f"sqlite:///{path}")
    _migrate(engine, "upgrade", revision)
    return engine


@pytest.fixture
def old_engine(tmp_path) -> Iterator[Any]:
    """A SQLite file at revision 0005, before zoned times were rewritten."""
    engine = _engine_at(tmp_path / "old.db", "0005")
    yield engine
    engine.dispose()


def _migrate(engine: Any, step: str, target: str) -> None:
    from alembic import command

    from api.cli import alembic_config

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, step)(cfg, target)


def _add_regions(conn: Any, created_at: dict[str, str]) -> None:
    """Regions (id, name and code alike) with created_at stored as the given text."""
    conn.execute(
        text("INSERT INTO regions (id, name, code, created_at) VALUES (:id, :id, :id, :at)"),
        [{"id": rid, "at": at} for rid, at in created_at.items()],
    )


def _stored(engine: Any, table: str, column: str, key: str, value: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT {column} FROM {table} WHERE {key} = :v"), {"v": value}
        ).scalar_one()


def _regions_created(session: Session, start: dt.datetime, end: dt.datetime) -> set[str]:
    created = Region.created_at
    return set(session.scalars(select(Region.id).where(created >= start, created < end)))


def test_zoned_time_text_is_rewritten_in_sqlalchemys_format(old_engine):
    engine = old_engine
    with engine.begin() as conn:
        _add_regions(
            conn,
            {
                # str(datetime) of a batch insert: UTC, without and with microseconds.
                "midnight": "2026-06-01 00:00:00+00:00",
                "late": "2026-05-31 23:30:00.250000+00:00",
                # Another offset and the ISO 'T': 07:30 in Shanghai is 23:30 UTC the day before.
                "shanghai": "2026-06-01T07:30:00.500000+08:00",
                # Already SQLAlchemy's: left alone.
                "right": "2026-05-31 12:00:00.000000",
            },
        )
        conn.execute(
            text(
                "INSERT INTO inspections (id, server_rev, template_id, site_id, status,"
                " critical_failed, media_complete, has_conflicts, created_at, updated_at,"
                " deleted_at, completed_received_at, reviewed_at) VALUES ('i1', 1, 't', 's',"
                " 'completed', 0, 1, 0, '2026-05-31 22:00:00.123456-05:00',"
                " '2026-05-31 08:00:00.000000', '2026-06-01 00:00:00+00:00',"
                " '2026-05-31 23:59:59.999999+00:00', NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit_events (at, entity, entity_id, action, changes)"
                " VALUES (:at, 'inspection', 'i1', 'create', '{}')"
            ),
            [{"at": f"2026-05-31 23:{n % 60:02d}:00+00:00"} for n in range(MANY)],
        )
    with Session(bind=engine) as session:
        # As stored before the migration, text compares wrongly: midnight falls before the
        # day it starts, and the Shanghai row after the UTC day it belongs to.
        assert _regions_created(session, MAY_31, JUNE_1) == {"late", "midnight", "right"}

    _migrate(engine, "upgrade", "head")

    assert _stored(engine, "regions", "created_at", "id", "midnight") == (
        "2026-06-01 00:00:00.000000"
    )
    assert _stored(engine, "regions", "created_at", "id", "late") == "2026-05-31 23:30:00.250000"
    assert _stored(engine, "regions", "created_at", "id", "shanghai") == (
        "2026-05-31 23:30:00.500000"
    )
    assert _stored(engine, "regions", "created_at", "id", "right") == "2026-05-31 12:00:00.000000"
    inspection = {
        "created_at": "2026-06-01 03:00:00.123456",
        "updated_at": "2026-05-31 08:00:00.000000",
        "deleted_at": "2026-06-01 00:00:00.000000",
        "completed_received_at": "2026-05-31 23:59:59.999999",
        "reviewed_at": None,
    }
    for column, stored in inspection.items():
        assert _stored(engine, "inspections", column, "id", "i1") == stored, column
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT at FROM audit_events ORDER BY id")).scalars().all()
    assert audit == [f"2026-05-31 23:{n % 60:02d}:00.000000" for n in range(MANY)]

    with Session(bind=engine) as session:
        assert session.get(Region, "shanghai").created_at == dt.datetime(
            2026, 5, 31, 23, 30, 0, 500000, tzinfo=UTC
        )
        assert session.get(Region, "midnight").created_at == JUNE_1
        i1 = session.get(Inspection, "i1")
        assert i1.created_at == dt.datetime(2026, 6, 1, 3, 0, 0, 123456, tzinfo=UTC)
        assert i1.deleted_at == JUNE_1
        assert i1.reviewed_at is None
        # The same ranges by SQL now hold each row in its own UTC day.
        assert _regions_created(session, MAY_31, JUNE_1) == {"late", "right", "shanghai"}
        assert _regions_created(session, JUNE_1, JUNE_1 + dt.timedelta(days=1)) == {"midnight"}
        deleted_june_1 = select(func.count()).where(
            Inspection.deleted_at >= JUNE_1, Inspection.deleted_at < JUNE_1 + dt.timedelta(days=1)
        )
        assert session.scalar(deleted_june_1) == 1
        completed_may_31 = select(func.count()).where(
            Inspection.completed_received_at >= MAY_31, Inspection.completed_received_at < JUNE_1
        )
        assert session.scalar(completed_may_31) == 1
        at = AuditEvent.at
        assert session.scalar(select(func.count()).where(at >= MAY_31, at < JUNE_1)) == MANY

    # Idempotent, and the downgrade leaves the values as they are.
    with engine.connect() as conn:
        before = _dump(conn)
    _migrate(engine, "downgrade", "0005")
    _migrate(engine, "upgrade", "head")
    with engine.connect() as conn:
        assert _dump(conn) == before


def _dump(conn: Any) -> list[tuple]:
    return [
        *conn.execute(text("SELECT id, created_at FROM regions ORDER BY id")),
        *conn.execute(text("SELECT * FROM inspections")),
        *conn.execute(text("SELECT id, at FROM audit_events ORDER BY id")),
    ]


@pytest.fixture
def engine_0006(tmp_path) -> Iterator[Any]:
    """A SQLite file at revision 0006, before times the database filled in had a fraction."""
    engine = _engine_at(tmp_path / "at6.db", "0006")
    yield engine
    engine.dispose()


def test_whole_second_times_gain_sqlalchemys_fraction(engine_0006):
    engine = engine_0006
    with engine.begin() as conn:
        _add_regions(
            conn,
            {
                # As SQLite's CURRENT_TIMESTAMP wrote them: the first second of June 1 ...
                "midnight": "2026-06-01 00:00:00",
                "evening": "2026-05-31 18:45:10",
                # ... and SQLAlchemy's own form, left alone.
                "right": "2026-05-31 12:00:00.250000",
            },
        )
        conn.execute(
            text(
                "INSERT INTO inspections (id, server_rev, template_id, site_id, status,"
                " critical_failed, media_complete, has_conflicts, deleted_at)"
                " VALUES ('i1', 1, 't', 's', 'draft', 0, 1, 0, NULL)"
            )
        )
    with Session(bind=engine) as session:
        # Before: midnight sorts before June 1's bound ('... 00:00:00.000000').
        assert _regions_created(session, MAY_31, JUNE_1) == {"evening", "midnight", "right"}
    stamped = _stored(engine, "inspections", "created_at", "id", "i1")
    assert len(stamped) == len("2026-06-01 00:00:00")  # the database's default, to be fixed

    _migrate(engine, "upgrade", "head")

    assert _stored(engine, "regions", "created_at", "id", "midnight") == (
        "2026-06-01 00:00:00.000000"
    )
    assert _stored(engine, "regions", "created_at", "id", "evening") == (
        "2026-05-31 18:45:10.000000"
    )
    assert _stored(engine, "regions", "created_at", "id", "right") == "2026-05-31 12:00:00.250000"
    assert _stored(engine, "inspections", "created_at", "id", "i1") == stamped + ".000000"
    assert _stored(engine, "inspections", "deleted_at", "id", "i1") is None
    with Session(bind=engine) as session:
        assert _regions_created(session, MAY_31, JUNE_1) == {"evening", "right"}
        assert _regions_created(session, JUNE_1, JUNE_1 + dt.timedelta(days=1)) == {"midnight"}
        assert session.get(Region, "midnight").created_at == JUNE_1

    with engine.connect() as conn:
        before = _dump(conn)
    _migrate(engine, "downgrade", "0006")
    _migrate(engine, "upgrade", "head")
    with engine.connect() as conn:
        assert _dump(conn) == before


def test_rows_the_app_writes_carry_a_fraction_of_a_second(engine_0006):
    from store.models import Site
    from sync import writer

    engine = engine_0006
    _migrate(engine, "upgrade", "head")
    with Session(bind=engine) as session:
        session.add(Region(id="r", name="r", code="r"))
        session.add(Site(id="one", region_id="r", name="One", code="ONE", timezone="UTC"))
        session.flush()
        # A sync push's batch (50 rows or more) goes through the driver's executemany.
        batch = [
            {"id": f"s{n:03d}", "region_id": "r", "name": f"S{n}", "code": f"S{n}"}
            for n in range(writer.COPY_MIN_ROWS)
        ]
        writer.insert_rows(session, Site.__table__, batch, first_rev=500)
        session.commit()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT id, created_at, updated_at FROM sites")).all()
    assert len(stored) == 1 + writer.COPY_MIN_ROWS
    fraction = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
    for sid, created, updated in stored:
        assert fraction.fullmatch(created), (sid, created)
        assert fraction.fullmatch(updated), (sid, updated)
