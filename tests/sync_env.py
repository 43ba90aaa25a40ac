"""Sync fixtures: the demo organisation, a small known template, devices."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from store.models import Site, TemplateVersion
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH
from tests.sync.device import Device

BODY = {
    "sections": [
        {
            "key": "main",
            "title": {"zh": "主要", "en": "Main"},
            "items": [
                {
                    "key": "clean",
                    "label": {"zh": "地面清洁", "en": "Floor clean"},
                    "type": "yes_no",
                    "photo": "on_fail",
                },
                {
                    "key": "fridge",
                    "label": {"zh": "冰箱温度", "en": "Fridge temperature"},
                    "type": "number",
                    "unit": "°C",
                    "max": 5,
                    "critical": True,
                },
                {
                    "key": "remark",
                    "label": {"zh": "备注", "en": "Remarks"},
                    "type": "text",
                    "required": False,
                },
            ],
        }
    ]
}


@pytest.fixture
def env(api, demo_org, db) -> dict[str, Any]:
    """Demo org plus a published three-item template; returns handy ids."""
    draft = api.post(
        "/templates",
        HQ_EMAIL,
        json={
            "template_key": "sync_probe",
            "category": "hygiene",
            "title": {"zh": "同步测试", "en": "Sync probe"},
            "body": BODY,
        },
    ).get_json()
    version = api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL).get_json()
    sites = {s.code: s.id for s in db.query(Site)}
    assert db.get(TemplateVersion, version["id"]) is not None
    return {"template": version["id"], "sites": sites, "users": demo_org}


@pytest.fixture
def device(client, api):
    """Make a device signed in as an account."""
    made = []

    def make(email: str = ANA, name: str | None = None, limit: int | None = None) -> Device:
        token = (
            api.login(email)["access_token"]
            if email not in api.tokens
            else api.tokens[email]["access_token"]
        )
        dev = Device(client, token, name or f"{email}-{len(made)}", limit=limit)
        made.append(dev)
        return dev

    return make


def now_ms() -> int:
    return int(time.time() * 1000)


def new_inspection(dev: Device, env: dict, site: str = "N-HOTEL", **extra: Any) -> str:
    """Create an in-progress inspection on a device."""
    return dev.create(
        "inspections",
        template_id=env["template"],
        site_id=env["sites"][site],
        status="in_progress",
        started_at=now_ms(),
        area="Room 1203",
        **extra,
    )


def new_action(dev: Device, env: dict, inspection_id: str | None, **extra: Any) -> str:
    """A corrective action raised on the device at N-HOTEL (open, medium, unless `extra` says)."""
    fields = {"title": "Fix it", "priority": "medium", "status": "open", **extra}
    return dev.create(
        "actions", inspection_id=inspection_id, site_id=env["sites"]["N-HOTEL"], **fields
    )


def elsewhere(device: Any, env: dict) -> None:
    """Work goes on elsewhere (Ben's phone pushes an inspection): the deployment's cursor moves
    on, as it does where people work. A lost site's deletions wait for pulls that hand out a
    new cursor (sync/holds.py)."""
    phone = device(BEN, "elsewhere")
    phone.sync()
    new_inspection(phone, env, site="N-HOTEL")
    phone.sync()


def answer(dev: Device, inspection_id: str, key: str, value: Any, **extra: Any) -> str:
    """Create a response on a device."""
    return dev.create(
        "responses",
        inspection_id=inspection_id,
        item_key=key,
        value=json.dumps(value),
        answered_at=now_ms(),
        **extra,
    )


def photo_record(
    dev: Device,
    inspection_id: str | None,
    response_id: str | None,
    data: bytes,
    mime: str = "image/jpeg",
    **extra: Any,
) -> str:
    """Create a photo attachment record on a device describing these bytes."""
    return dev.create(
        "attachments",
        inspection_id=inspection_id,
        response_id=response_id,
        kind="photo",
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        byte_size=len(data),
        **extra,
    )


@pytest.fixture
def completed(env, device) -> tuple[Device, str]:
    """A device completes an inspection with two failed items, one of them critical; returns
    the device and the inspection."""
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    assert phone.sync()["conflicts"] == []
    phone.sync()
    return phone, iid


def completed_with_action(env, device, db, name: str = "phone") -> tuple[Device, str, str]:
    """A device completes an inspection with one failed item, which opens one corrective
    action; returns (device, inspection id, action id)."""
    from store.models import Action

    phone = device(ANA, name)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    return phone, iid, db.query(Action).filter_by(inspection_id=iid).one().id


def concurrent_action_edit(device, db, action_id: str):
    """Two of Ana's devices edit an action's description, the stale one last: the server
    keeps "from a" and records a concurrent_edit conflict holding "from b"; returns it."""
    from store.models import Conflict

    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    b.sync()
    b.update("actions", action_id, description="from b")
    b.sync()
    a.update("actions", action_id, description="from a")
    a.sync()
    return db.query(Conflict).filter_by(record_id=action_id, kind="concurrent_edit").one()


__all__ = [
    "ANA",
    "BEN",
    "HQ_EMAIL",
    "NORTH",
    "SOUTH",
    "answer",
    "completed_with_action",
    "concurrent_action_edit",
    "daily_schedule",
    "elsewhere",
    "new_action",
    "new_inspection",
    "now_ms",
    "photo_record",
]


def daily_schedule(
    api: Any,
    env: dict,
    key: str = "sync_probe",
    site: str = "N-HOTEL",
    assignee_ids: list[str] | None = None,
) -> str:
    """HQ schedules checklist `key` daily at 09:00 at a site (for these assignees, or for
    whoever is on duty when None); returns the schedule's id."""
    templates = api.get("/templates?page_size=100", HQ_EMAIL).get_json()
    body: dict[str, Any] = {
        "template_id": next(t["id"] for t in templates if t["template_key"] == key),
        "site_id": env["sites"][site],
        "recurrence": {"freq": "daily", "times": ["09:00"]},
    }
    if assignee_ids is not None:
        body["assignee_ids"] = assignee_ids
    made = api.post("/schedules", HQ_EMAIL, json=body)
    assert made.status_code == 201, made.get_json()
    return made.get_json()["id"]


def write_inspections(app: Any, new: list[dict], changes: dict[str, dict] | None = None) -> None:
    """One transaction through the sync writer: inspection rows to insert, and id -> columns
    to change (as a push or review would write them, rollups included)."""
    from store.changeset import ChangeSet
    from sync import writer
    from sync.tables import TABLES

    changes = changes or {}
    with app.app_context():
        from api import db as api_db

        session = api_db.session()
        cs = ChangeSet(user_id="hq", role="hq", device_id=None, now_ms=0)
        for row in new:
            cs.add_new("inspections", row)
        table = TABLES["inspections"].table
        for row in writer.load_rows(session, table, "id", sorted(changes)):
            cs.add_context("inspections", row).update(changes[row["id"]])
        writer.write(session, cs)
        api_db.commit()


def upload_photo(dev: Device, att_id: str, data: bytes, mime: str = "image/jpeg") -> None:
    """Send a photo's bytes for its record, as the app does after a push: ask, put, complete."""
    headers = dev.headers()
    ask = {"sha256": hashlib.sha256(data).hexdigest(), "byte_size": len(data), "mime": mime}
    resp = dev.client.post(f"/api/v1/attachments/{att_id}/upload", headers=headers, json=ask)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    if not body.get("already_uploaded"):
        put = dev.client.put(body["url"], data=data, headers={**headers, **body["headers"]})
        assert put.status_code == 200, put.get_json()
    done = dev.client.post(f"/api/v1/attachments/{att_id}/complete", headers=headers)
    assert done.status_code == 200, done.get_json()


def action_with_photo(env: dict, device: Any, uploaded: bool = True) -> tuple[str, str]:
    """Ana's phone raises an action in a new inspection at N-HOTEL and photographs it (and
    sends the photo's bytes, if `uploaded`); returns (action, photo)."""
    from tests.media.conftest import jpeg

    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    aid = new_action(phone, env, iid)
    data = jpeg(40, 30)
    att = photo_record(phone, None, None, data, action_id=aid)
    assert phone.sync()["conflicts"] == []
    if uploaded:
        upload_photo(phone, att, data)
    return aid, att


def refused_fix_photo_deletion(env: dict, device: Any, api: Any, db: Any) -> tuple[str, str, Any]:
    """The action is resolved with its photo, then a second device deletes the photo: refused
    as locked (the fix's evidence); returns (action, photo, the conflict)."""
    from store.models import Conflict

    aid, att = action_with_photo(env, device)
    done = {"status": "resolved", "note": "Cleaned"}
    assert api.post(f"/actions/{aid}/transition", ANA, json=done).status_code == 200
    tab = device(ANA, "tab")
    tab.sync()
    tab.delete("attachments", att)
    assert [c["kind"] for c in tab.sync()["conflicts"]] == ["locked"]
    return aid, att, db.query(Conflict).filter_by(record_id=att, kind="locked").one()


def open_window(db: Any, occurrence_id: str) -> None:
    """Open an occurrence's window an hour ago (as if its time had come), so a run completed
    now may fulfil it: the next occurrence of a fresh schedule is usually still upcoming."""
    import datetime as dt

    from sqlalchemy import update

    from store.models import Occurrence

    opened = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    db.execute(update(Occurrence).where(Occurrence.id == occurrence_id).values(window_start=opened))
    db.commit()
