"""A world for authorization tests: every kind of record once in North and once in South.

Built once through the real flows (demo seed, two inspectors' phones syncing, photo uploads,
refused pushes that leave conflicts), then copied back into the emptied tables before each test
that asks for it, so every test gets its own untouched world for a few milliseconds.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from api import create_app
from api.config import DEMO_PASSWORD
from store.models import (
    Action,
    Base,
    Conflict,
    Occurrence,
    Region,
    Schedule,
    Site,
    SiteAssignment,
    SyncCounter,
    Template,
)
from sync.revs import current_rev
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH
from tests.media.conftest import jpeg
from tests.sync_env import answer, new_inspection, photo_record

TOKEN_MAX_AGE = 600  # seconds; access tokens live 900
EMAILS = (HQ_EMAIL, NORTH, SOUTH, ANA, BEN)
# Region code -> (site of its inspections, its other site, a user its manager sees, the
# inspector whose assignment and occurrences stand for the region)
SIDES = {"N": ("N-HOTEL", "N-CANTEEN", ANA, ANA), "S": ("S-HOTEL", "S-STORE", SOUTH, BEN)}
# Path parameter -> the Side field holding a record of that kind.
PARAMS = {
    "region_id": "region",
    "site_id": "site",
    "user_id": "user",
    "assignment_id": "assignment",
    "schedule_id": "schedule",
    "inspection_id": "inspection",
    "action_id": "action",
    "attachment_id": "attachment",
    "conflict_id": "conflict",
    "template_id": "template",
    "version_id": "version",
}


@dataclass(frozen=True)
class Side:
    """One region's records, by id (the keys of PARAMS in the matrix name these fields)."""

    code: str
    region: str
    site: str  # where this side's inspections live
    spare_site: str  # the region's other site, assigned to no inspector of the world
    user: str  # a user this region's manager sees
    assignment: str
    schedule: str
    occurrence: str
    inspection: str  # completed, two failed items, a photo uploaded
    open_inspection: str  # in progress, every required item answered
    open_response: str  # its answer to "clean"
    response: str
    attachment: str
    photo: bytes = field(repr=False)
    action: str
    conflict: str
    template: str  # org-wide: the same on both sides
    version: str


@dataclass
class World:
    """Ids of both sides, the users, and signed-in headers per account."""

    users: dict[str, str]
    north: Side
    south: Side
    refresh_token: str
    tokens: dict[str, tuple[str, float]]
    foreign: frozenset[str]  # every South id: North's manager and inspector never see one
    cursor: int  # a sync cursor past every record of the world

    def headers(self, email: str | None, **extra: str) -> dict[str, str]:
        """Authorization (none for anonymous) plus extra headers."""
        if email is None:
            return dict(extra)
        return {"Authorization": f"Bearer {self.tokens[email][0]}", **extra}


def _upload(client: Any, dev: Any, att_id: str, data: bytes) -> None:
    sha = hashlib.sha256(data).hexdigest()
    url = f"/api/v1/attachments/{att_id}"
    body = {"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"}
    resp = client.post(f"{url}/upload", headers=dev.headers(), json=body)
    assert resp.status_code == 200, resp.get_json()
    put = client.put(
        resp.get_json()["url"], data=data, headers={**dev.headers(), **resp.json["headers"]}
    )
    assert put.status_code == 200, put.get_json()
    assert client.post(f"{url}/complete", headers=dev.headers()).status_code == 200


def _run_inspections(dev: Any, env: dict, site: str, photo: bytes) -> dict[str, str]:
    """A completed inspection with a photo of its failed item, and one ready to complete."""
    dev.sync()
    done = new_inspection(dev, env, site)
    response = answer(dev, done, "clean", "no")
    answer(dev, done, "fridge", 9)
    attachment = photo_record(dev, done, response, photo)
    dev.update("inspections", done, status="completed", completed_at=1_795_000_000_000)
    ready = new_inspection(dev, env, site)
    ready_response = answer(dev, ready, "clean", "yes")
    answer(dev, ready, "fridge", 3)
    assert dev.sync()["conflicts"] == []
    return {
        "inspection": done,
        "open_inspection": ready,
        "open_response": ready_response,
        "response": response,
        "attachment": attachment,
    }


def _refused_edit(dev: Any, inspection_id: str) -> None:
    """Edit someone else's inspection on a device: the server refuses it as a conflict."""
    dev.db["inspections"][inspection_id] = {
        "raw": {"id": inspection_id, "notes": "not mine"},
        "_status": "updated",
        "_changed": {"notes"},
    }
    conflicts = dev.push(dev.pull())["conflicts"]
    assert [c["id"] for c in conflicts] == [inspection_id], conflicts


def _first(db: Any, stmt: Any) -> str:
    """The first id a query finds (there must be one)."""
    found = db.execute(stmt).scalars().first()
    assert found, stmt
    return found


def _side(db: Any, users: dict[str, str], code: str, records: dict[str, Any]) -> Side:
    """Look up the rest of a region's records around the ones the phones made."""
    site_code, spare, user, assignee = SIDES[code]
    sites = {s.code: s.id for s in db.query(Site)}
    site, assignee_id = sites[site_code], users[assignee]
    return Side(
        code=code,
        region=_first(db, select(Region.id).where(Region.code == code)),
        site=site,
        spare_site=sites[spare],
        user=users[user],
        assignment=_first(
            db,
            select(SiteAssignment.id).where(
                SiteAssignment.site_id == site, SiteAssignment.user_id == assignee_id
            ),
        ),
        schedule=_first(db, select(Schedule.id).where(Schedule.site_id == site)),
        occurrence=_first(
            db,
            select(Occurrence.id)
            .where(Occurrence.site_id == site, Occurrence.assignee_id == assignee_id)
            .order_by(Occurrence.due_at),
        ),
        action=_first(
            db,
            select(Action.id)
            .where(Action.inspection_id == records["inspection"])
            .order_by(Action.priority, Action.id),
        ),
        conflict=_first(db, select(Conflict.id).where(Conflict.site_id == site)),
        **records,
    )


def _foreign_ids(db: Any, south: Side, users: dict[str, str]) -> frozenset[str]:
    """Every id that belongs to South: its region, sites, records, and its manager."""
    south_sites = set(db.execute(select(Site.id).where(Site.region_id == south.region)).scalars())
    ids = {south.region, users[SOUTH], hashlib.sha256(south.photo).hexdigest(), *south_sites}
    for table in Base.metadata.sorted_tables:
        if "site_id" in table.c and "id" in table.c:
            rows = db.execute(select(table.c.id).where(table.c.site_id.in_(south_sites)))
            ids.update(rows.scalars())
    return frozenset(ids)


def _build(request: pytest.FixtureRequest) -> World:
    """Run the real flows once: seed, sync two phones, upload, leave a conflict per region."""
    env = request.getfixturevalue("env")
    make_device, client, api, db = (
        request.getfixturevalue(name) for name in ("device", "client", "api", "db")
    )
    phones = {"N": make_device(ANA, "ana-phone"), "S": make_device(BEN, "ben-phone")}
    photos = {"N": jpeg(64, 48), "S": jpeg(48, 64)}  # different bytes: a South sha is South's
    made = {
        code: _run_inspections(phones[code], env, SIDES[code][0], photos[code]) for code in SIDES
    }
    for code in SIDES:
        _upload(client, phones[code], made[code]["attachment"], photos[code])
    _refused_edit(phones["S"], made["N"]["inspection"])  # BEN works at N-HOTEL, but it is ANA's
    _refused_edit(phones["N"], made["S"]["inspection"])  # ANA cannot reach S-HOTEL at all
    users = env["users"]
    draft = _first(db, select(Template.id).where(Template.template_key == "sync_probe"))
    common = {"template": draft, "version": env["template"]}
    north, south = (
        _side(db, users, code, {**made[code], **common, "photo": photos[code]}) for code in SIDES
    )
    refresh = api.login(ANA)["refresh_token"]
    tokens = {e: (api.headers(e)["Authorization"].split()[1], time.time()) for e in EMAILS}
    foreign = _foreign_ids(db, south, users)
    return World(users, north, south, refresh, tokens, foreign, current_rev(db))


def document_app() -> Any:
    """An app that only serves the OpenAPI document (its database is never touched)."""
    folder = tempfile.mkdtemp(prefix="openapi-")
    # Built while tests are collected, outside any fixture: removed when the run ends.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return create_app(
        {
            "DATABASE_URL": "sqlite://",
            "INSTANCE_PATH": folder,
            "MEDIA_ROOT": f"{folder}/media",
            "SECRET_KEY": "openapi-document-only-key-0123456789abcdef",
            "TESTING": True,
        }
    )


def state(app: Any) -> dict[str, dict[tuple, dict]]:
    """Every stored row now, by table and primary key."""
    return _by_key(_snapshot(app.extensions["db_engine"]))


def pristine(app: Any) -> dict[str, dict[tuple, dict]]:
    """The rows of the untouched world."""
    return _by_key(_BUILT[id(app)][1])


def _by_key(rows: list[tuple[Any, list[dict]]]) -> dict[str, dict[tuple, dict]]:
    keyed = {}
    for table, data in rows:
        pk = [c.name for c in table.primary_key.columns]
        keyed[table.name] = {tuple(r[c] for c in pk): r for r in data}
    return keyed


def _snapshot(engine: Any) -> list[tuple[Any, list[dict]]]:
    """Every row of every table but the rev counter, parents first."""
    with engine.connect() as conn:
        return [
            (table, [dict(r) for r in conn.execute(select(table)).mappings()])
            for table in Base.metadata.sorted_tables
            if table.name != SyncCounter.__tablename__
        ]


def _restore(engine: Any, rows: list[tuple[Any, list[dict]]]) -> None:
    with engine.begin() as conn:
        for table, data in rows:
            if data:
                conn.execute(table.insert(), data)


def _fresh_tokens(world: World, client: Any) -> None:
    """Sign in again before an access token could expire during a long run."""
    for email, (_, issued) in list(world.tokens.items()):
        if time.time() - issued > TOKEN_MAX_AGE:
            body = {"email": email, "password": DEMO_PASSWORD}
            resp = client.post("/api/v1/auth/login", json=body)
            world.tokens[email] = (resp.get_json()["access_token"], time.time())


_BUILT: dict[int, tuple[World, list]] = {}


@pytest.fixture
def world(app: Any, request: pytest.FixtureRequest) -> World:
    """The North/South world, untouched, for this test."""
    engine = app.extensions["db_engine"]
    if id(app) not in _BUILT:
        built = _build(request)
        _BUILT[id(app)] = (built, _snapshot(engine))
        return built
    built, rows = _BUILT[id(app)]
    _restore(engine, rows)
    _fresh_tokens(built, request.getfixturevalue("client"))
    return built
