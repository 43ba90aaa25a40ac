"""A cursor never skips a row: concurrent pushers and a puller looping on its cursor.

On PostgreSQL the writers really overlap (the counter row lock orders only the stamp and
COMMIT); on SQLite they serialise on the write lock, and the same property must hold."""

from __future__ import annotations

import threading

from sqlalchemy import select

from store.models import Inspection, Response
from tests.conftest import TEST_DATABASE_URL
from tests.sync.device import random_id
from tests.sync_env import ANA, BEN, now_ms

WRITERS = 4
PUSHES = 150 if TEST_DATABASE_URL else 40


def _push_loop(app, token, device_id, env, site, errors):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "X-Device-Id": device_id}
    cursor = 0
    for _ in range(PUSHES):
        iid = random_id()
        changes = {
            "inspections": {
                "created": [
                    {
                        "id": iid,
                        "template_id": env["template"],
                        "site_id": env["sites"][site],
                        "status": "in_progress",
                        "started_at": now_ms(),
                    }
                ],
                "updated": [],
                "deleted": [],
            },
            "responses": {
                "created": [
                    {
                        "id": random_id(),
                        "inspection_id": iid,
                        "item_key": "clean",
                        "value": '"yes"',
                    },
                    {"id": random_id(), "inspection_id": iid, "item_key": "fridge", "value": "3"},
                ],
                "updated": [],
                "deleted": [],
            },
        }
        resp = client.post(
            "/api/v1/sync/push",
            headers=headers,
            json={"changes": changes, "last_pulled_at": cursor},
        )
        if resp.status_code != 200:
            errors.append(resp.get_json())
            return
        cursor = resp.get_json()["timestamp"]


def test_puller_sees_every_committed_row_at_its_final_rev(app, env, api, db):
    tokens = {email: api.login(email)["access_token"] for email in (ANA, BEN)}
    errors: list = []
    writers = [
        threading.Thread(
            target=_push_loop,
            args=(app, tokens[ANA if i % 2 else BEN], f"writer-{i}", env, "N-HOTEL", errors),
        )
        for i in range(WRITERS)
    ]
    seen: dict[tuple[str, str], int] = {}
    done = threading.Event()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {tokens[ANA]}", "X-Device-Id": "puller"}

    def pull_once(cursor):
        resp = client.get(
            "/api/v1/sync/pull",
            headers=headers,
            query_string={"last_pulled_at": cursor, "limit": 50},
        )
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        for table in ("inspections", "responses"):
            for rec in body["changes"][table]["updated"]:
                seen[(table, rec["id"])] = rec["server_rev"]
        return body

    first = pull_once(None)
    cursor = first["timestamp"]
    for t in writers:
        t.start()

    def puller():
        nonlocal cursor
        while not done.is_set():
            cursor = pull_once(cursor)["timestamp"]

    p = threading.Thread(target=puller)
    p.start()
    for t in writers:
        t.join()
    done.set()
    p.join()
    while True:
        body = pull_once(cursor)
        cursor = body["timestamp"]
        if not body["has_more"]:
            break
    assert not errors, errors[:3]
    db.expire_all()
    final = {("inspections", i.id): i.server_rev for i in db.execute(select(Inspection)).scalars()}
    final |= {("responses", r.id): r.server_rev for r in db.execute(select(Response)).scalars()}
    assert len(final) == WRITERS * PUSHES * 3
    missing = [k for k, rev in final.items() if seen.get(k) != rev]
    assert missing == [], f"{len(missing)} rows skipped or seen at an old rev"
    revs = list(final.values())
    assert len(set(revs)) == len(revs), "revs are unique"
