"""A simulated offline device that follows WatermelonDB's synchronize() semantics.

Pull first (pages merged), apply with local-wins for locally changed columns, then push the
local changes with the new cursor; a 409 leaves everything dirty for the next attempt.
"""

from __future__ import annotations

import copy
import random
import string
from typing import Any

PUSHABLE = ("inspections", "responses", "attachments", "actions")
TABLES = ("sites", "templates", "occurrences", *PUSHABLE)
# A pull that pages on forever is a bug to report, not a test to hang.
MAX_PAGES = 2000


class SyncFailed(Exception):
    """The server refused the sync."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def random_id() -> str:
    """WatermelonDB-style 16-character id."""
    return "".join(random.choices(string.ascii_letters + string.digits, k=16))


class Device:
    """Local tables of raw records with _status and _changed, like WatermelonDB's."""

    def __init__(
        self,
        client: Any,
        token: str,
        device_id: str,
        limit: int | None = None,
        one_page: bool = False,
    ) -> None:
        self.client = client
        self.token = token
        self.device_id = device_id
        self.limit = limit
        # One page per sync, has_more or not, as a client whose pullChanges returns the page
        # it got (the next sync continues from that page's cursor).
        self.one_page = one_page
        self.last_pulled_at: int | None = None
        self.has_more = False  # whether the last page pulled said more remain
        self.db: dict[str, dict[str, dict]] = {t: {} for t in TABLES}
        self.pushes = 0

    # --- local edits -------------------------------------------------------------------

    def create(self, table: str, **values: Any) -> str:
        rid = values.pop("id", None) or random_id()
        self.db[table][rid] = {
            "raw": {"id": rid, **values},
            "_status": "created",
            "_changed": set(),
        }
        return rid

    def update(self, table: str, rid: str, **values: Any) -> None:
        rec = self.db[table][rid]
        if rec["_status"] == "synced":
            rec["_status"] = "updated"
            # The app records which server version this edit is based on.
            if rec["raw"].get("server_rev") is not None and "base_rev" not in rec["_changed"]:
                rec["raw"]["base_rev"] = rec["raw"]["server_rev"]
                rec["_changed"].add("base_rev")
        rec["raw"].update(values)
        if rec["_status"] != "created":
            rec["_changed"].update(values)

    def delete(self, table: str, rid: str) -> None:
        rec = self.db[table][rid]
        if rec["_status"] == "created":
            del self.db[table][rid]
        else:
            rec["_status"] = "deleted"

    def get(self, table: str, rid: str) -> dict | None:
        rec = self.db[table].get(rid)
        return None if rec is None or rec["_status"] == "deleted" else rec["raw"]

    def live(self, table: str) -> dict[str, dict]:
        return {rid: r["raw"] for rid, r in self.db[table].items() if r["_status"] != "deleted"}

    def dirty(self) -> bool:
        return any(r["_status"] != "synced" for t in PUSHABLE for r in self.db[t].values())

    # --- sync ----------------------------------------------------------------------------

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Device-Id": self.device_id, **extra}

    def pull(self) -> int:
        cursor = self.last_pulled_at
        merged: dict[str, dict[str, list]] = {t: {"updated": [], "deleted": []} for t in TABLES}
        strategy = None
        for _page in range(MAX_PAGES):
            params = {} if cursor is None else {"last_pulled_at": cursor}
            if self.limit:
                params["limit"] = self.limit
            resp = self.client.get("/api/v1/sync/pull", query_string=params, headers=self.headers())
            if resp.status_code != 200:
                raise SyncFailed(resp.status_code, resp.get_json())
            body = resp.get_json()
            strategy = strategy or body.get("experimentalStrategy")
            for table, ch in body["changes"].items():
                assert ch["created"] == [], "the server must send creations as updates"
                merged[table]["updated"].extend(ch["updated"])
                merged[table]["deleted"].extend(ch["deleted"])
            cursor = body["timestamp"]
            self.has_more = bool(body.get("has_more"))
            if not self.has_more or self.one_page:
                break
        else:
            raise SyncFailed(0, {"message": f"the pull did not end within {MAX_PAGES} pages"})
        self._apply(merged, strategy)
        return cursor

    def _apply(self, changes: dict[str, dict[str, list]], strategy: str | None) -> None:
        for table, ch in changes.items():
            local = self.db[table]
            if strategy == "replacement":
                keep = {r["id"] for r in ch["updated"]}
                for rid in list(local):
                    # As WatermelonDB: only records created here and not yet pushed stay.
                    if rid not in keep and local[rid]["_status"] != "created":
                        del local[rid]
            for raw in ch["updated"]:
                rec = local.get(raw["id"])
                if rec is None:
                    local[raw["id"]] = {"raw": dict(raw), "_status": "synced", "_changed": set()}
                elif rec["_status"] == "synced":
                    rec["raw"] = dict(raw)
                elif rec["_status"] in ("updated", "created"):
                    merged = dict(raw)
                    for col in rec["_changed"] or set(rec["raw"]):
                        if col in rec["raw"]:
                            merged[col] = rec["raw"][col]
                    rec["raw"] = merged
            for rid in ch["deleted"]:
                local.pop(rid, None)

    def push(self, cursor: int, idempotency_key: str | None = None) -> dict:
        changes: dict[str, dict[str, list]] = {}
        for table in PUSHABLE:
            created, updated, deleted = [], [], []
            for rid, rec in self.db[table].items():
                raw = dict(
                    rec["raw"], _status=rec["_status"], _changed=",".join(sorted(rec["_changed"]))
                )
                if rec["_status"] == "created":
                    created.append(raw)
                elif rec["_status"] == "updated":
                    updated.append(raw)
                elif rec["_status"] == "deleted":
                    deleted.append(rid)
            changes[table] = {"created": created, "updated": updated, "deleted": deleted}
        headers = self.headers(**({"Idempotency-Key": idempotency_key} if idempotency_key else {}))
        resp = self.client.post(
            "/api/v1/sync/push",
            headers=headers,
            json={"changes": changes, "last_pulled_at": cursor},
        )
        self.pushes += 1
        if resp.status_code != 200:
            raise SyncFailed(resp.status_code, resp.get_json())
        for table in PUSHABLE:
            for rid in list(self.db[table]):
                rec = self.db[table][rid]
                if rec["_status"] == "deleted":
                    del self.db[table][rid]
                else:
                    rec["_status"], rec["_changed"] = "synced", set()
        return resp.get_json()

    def sync(self) -> dict | None:
        # As WatermelonDB: the cursor is saved with the pulled changes, before the push.
        cursor = self.pull()
        self.last_pulled_at = cursor
        return self.push(cursor) if self.dirty() else None

    def snapshot(self) -> dict[str, dict[str, dict]]:
        return copy.deepcopy({t: self.live(t) for t in TABLES})
