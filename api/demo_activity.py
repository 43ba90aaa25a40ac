"""Demo activity for `seed-demo`: a few inspections made the way a phone makes them (sync pull
and push, then photo and signature uploads, all through the API), so the console has work to
review. Development only."""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.request
import uuid
from typing import Any

from flask import Flask
from PIL import Image, ImageDraw

from api.config import DEMO_PASSWORD
from inspections.canonical import content_sha256

# inspector, site code, checklist, how many yes/no items fail, area, then approved by the manager
PLAN = (
    ("ana.inspector@demo.example", "N-HOTEL", "hotel_room_hygiene", 3, "1203 房间 Room", False),
    ("ana.inspector@demo.example", "N-CANTEEN", "canteen_food_handler_hygiene", 2, "冷荤间", False),
    ("ben.inspector@demo.example", "S-HOTEL", "hotel_room_hygiene", 1, "808 房间 Room", False),
    ("ben.inspector@demo.example", "N-HOTEL", "reception_service", 0, "大堂 Lobby", True),
)
MANAGERS = {"N": "north.manager@demo.example", "S": "south.manager@demo.example"}


def _id() -> str:
    return uuid.uuid4().hex[:16]


class Phone:
    """One signed-in device talking to the app through its test client."""

    def __init__(self, app: Flask, email: str) -> None:
        self.app = app
        self.client = app.test_client()
        token = self.call(
            "post", "/api/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD}
        )["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "X-Device-Id": f"demo-{email}"}
        self.cursor = 0
        self.records: dict[str, dict[str, dict]] = {}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request in an application context of its own: a request inside the command's
        context would share its `g` (signed-in user, session) with every other request."""
        with self.app.app_context():
            resp = getattr(self.client, method)(path, **kwargs)
        if resp.status_code >= 300:
            raise RuntimeError(f"demo seed: {resp.status_code} {resp.get_data(as_text=True)}")
        return resp.get_json()

    def pull(self) -> None:
        """Pull every page, keeping what a phone would show."""
        while True:
            page = self.call(
                "get", f"/api/v1/sync/pull?last_pulled_at={self.cursor}", headers=self.headers
            )
            for table, lists in page["changes"].items():
                for rec in lists["updated"]:
                    self.records.setdefault(table, {})[rec["id"]] = rec
            self.cursor = page["timestamp"]
            if not page["has_more"]:
                return

    def push(self, changes: dict[str, dict[str, list]]) -> None:
        """Push, after a pull (the protocol's order)."""
        self.pull()
        for lists in changes.values():
            for key in ("created", "updated", "deleted"):
                lists.setdefault(key, [])
        result = self.call(
            "post",
            "/api/v1/sync/push",
            json={"changes": changes, "last_pulled_at": self.cursor},
            headers=self.headers,
        )
        if result["conflicts"]:
            raise RuntimeError(f"demo seed: push refused {result['conflicts']}")

    def upload(self, attachment_id: str, data: bytes, mime: str) -> None:
        """Request, PUT and complete an upload, as the app's upload queue does."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.call(
            "post",
            f"/api/v1/attachments/{attachment_id}/upload",
            json={"sha256": digest, "byte_size": len(data), "mime": mime},
            headers=self.headers,
        )
        if not target.get("already_uploaded"):
            if target["url"].startswith(("http://", "https://")):
                # A presigned URL of the S3 store: the bytes go there, not to this service.
                put = urllib.request.Request(
                    target["url"], data=data, headers=target["headers"], method="PUT"
                )
                with urllib.request.urlopen(put, timeout=30):
                    pass
            else:
                headers = {**self.headers, **target["headers"]}
                self.call("put", target["url"], data=data, headers=headers)
        self.call("post", f"/api/v1/attachments/{attachment_id}/complete", headers=self.headers)


def photo(caption: str, seed: int) -> bytes:
    """A stand-in photo: a coloured card with the item it shows."""
    image = Image.new("RGB", (960, 720), ((seed * 67) % 200 + 30, (seed * 29) % 160 + 60, 150))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, 920, 680), outline=(255, 255, 255), width=6)
    draw.text((80, 320), caption, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _answer(item: dict[str, Any], fail: bool, now_ms: int) -> Any:
    """A plausible answer of the item's type (None for photo and signature items)."""
    kind = item["type"]
    if kind == "yes_no":
        return "no" if fail else "yes"
    if kind == "score_1_5":
        return 4
    if kind == "grade":
        return "良"
    if kind == "number":
        high, low = item.get("max"), item.get("min")
        return high - 1 if high is not None else (low + 1 if low is not None else 10)
    if kind == "count":
        return item.get("expected", 1)
    if kind == "choice":
        return next(o["value"] for o in item["options"] if not o.get("fail"))
    if kind == "text":
        return "正常 Normal"
    if kind == "date_time":
        return now_ms
    return None


def _inspection(phone: Phone, site_id: str, version: dict, failures: int, area: str) -> str:
    """Run one checklist on the phone: answers, photos, signatures, then completion."""
    now_ms = int(time.time() * 1000)
    iid = _id()
    inspection = {
        "id": iid,
        "template_id": version["id"],
        "site_id": site_id,
        "area": area,
        "mode": "scheduled",
        "status": "in_progress",
        "started_at": now_ms - 40 * 60_000,
    }
    responses, attachments, uploads, signatures = [], [], [], []
    left = failures
    body = json.loads(version["body"])
    for section in body["sections"]:
        for item in section["items"]:
            fail = item["type"] == "yes_no" and left > 0
            left -= 1 if fail else 0
            rid = _id()
            value = _answer(item, fail, now_ms)
            responses.append(
                {
                    "id": rid,
                    "inspection_id": iid,
                    "item_key": item["key"],
                    "value": None if value is None else json.dumps(value, ensure_ascii=False),
                    "note": "现场发现问题 Found on site" if fail else None,
                    "answered_at": now_ms,
                }
            )
            if item["type"] == "signature":
                signatures.append((rid, item))
                continue
            if (
                item["type"] == "photo"
                or item.get("photo") == "always"
                or (fail and item.get("photo") == "on_fail")
            ):
                data = photo(f"{area} · {item['key']}", len(uploads) + failures)
                aid = _id()
                attachments.append(_record(aid, iid, rid, "photo", data, "image/jpeg", now_ms))
                uploads.append((aid, data, "image/jpeg"))
    digest = content_sha256(
        {"template_id": inspection["template_id"], "site_id": site_id, "area": area},
        [{**r, "deleted_at": None} for r in responses],
        attachments,  # the photos so far: a photo item's answer (canonical.py)
    )
    for n, (rid, item) in enumerate(signatures):
        strokes = json.dumps([[[20, 60 + 10 * n], [80, 20], [140, 70], [220, 30]]]).encode()
        aid = _id()
        record = _record(aid, iid, rid, "signature", strokes, "application/json", now_ms)
        record.update(
            signer_name=item["label"]["zh"],
            signer_role="site_manager",
            signed_at=now_ms,
            signed_content_sha256=digest,
        )
        attachments.append(record)
        uploads.append((aid, strokes, "application/json"))
    phone.push(
        {
            "inspections": {"created": [inspection]},
            "responses": {"created": responses},
            "attachments": {"created": attachments},
        }
    )
    for aid, data, mime in uploads:
        phone.upload(aid, data, mime)
    done = {"id": iid, "status": "completed", "completed_at": now_ms}
    phone.push({"inspections": {"updated": [done]}})
    return iid


def _record(
    aid: str, iid: str, rid: str, kind: str, data: bytes, mime: str, now_ms: int
) -> dict[str, Any]:
    return {
        "id": aid,
        "inspection_id": iid,
        "response_id": rid,
        "kind": kind,
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime": mime,
        "byte_size": len(data),
        "captured_at": now_ms,
    }


def seed_activity(app: Flask) -> list[str]:
    """Run the demo plan; returns the inspection ids."""
    made = []
    for email, site_code, template_key, failures, area, approve in PLAN:
        phone = Phone(app, email)
        phone.pull()
        site = next(s for s in phone.records["sites"].values() if s["code"] == site_code)
        versions = [
            v for v in phone.records["templates"].values() if v["template_key"] == template_key
        ]
        version = max(versions, key=lambda v: v["version"])
        iid = _inspection(phone, site["id"], version, failures, area)
        if approve:
            manager = Phone(app, MANAGERS[site_code[0]])
            manager.call(
                "post", f"/api/v1/inspections/{iid}/approve", json={}, headers=manager.headers
            )
        made.append(iid)
    return made
