"""Simulated phones: WatermelonDB's synchronize() (tests/sync/device.py) over real HTTP, doing
what inspectors and managers do offline, plus a ledger of every record they made or deleted
and the end-of-run checks (nothing lost, nothing twice, everyone converged)."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from bench.reliability.client import Dropped, Http, Tally, Transport, request_url
from bench.reliability.photos import jpeg
from tests.sync.device import PUSHABLE, TABLES, Device, SyncFailed

# Templates whose required items can all be answered with values and photos (no signatures).
TEMPLATE_KEYS = ("reception_service", "staff_grooming_conduct")
WORDS = ("ok", "清洁", "lobby", "大堂", "checked twice", "复查", "east wing", "")


def now_ms() -> int:
    """Epoch milliseconds (a device clock; evidence only)."""
    return int(time.time() * 1000)


def answers_for(body: dict, rng: random.Random, fail_rate: float) -> list[tuple[str, Any, bool]]:
    """(item_key, value, needs_photo) for every answerable item of a template body."""
    out = []
    for section in body["sections"]:
        for item in section["items"]:
            kind, photo = item["type"], item.get("photo")
            if kind == "signature":
                continue
            if kind == "photo":
                out.append((item["key"], None, True))
                continue
            fails = False
            if kind == "yes_no":
                fails = photo == "on_fail" and rng.random() < fail_rate
                value: Any = "no" if fails else "yes"
            elif kind == "score_1_5":
                value = rng.randint(3, 5)
            elif kind == "grade":
                value = "优"
            elif kind == "number":
                lo, hi = item.get("min"), item.get("max")
                value = lo if lo is not None else (hi if hi is not None else 1)
            elif kind == "count":
                value = item.get("expected", 0)
                fails = photo == "on_fail" and "expected" not in item
            elif kind == "choice":
                best = max(item["options"], key=lambda o: (not o.get("fail"), o.get("score", 0)))
                value = best["value"]
            elif kind == "date_time":
                value = now_ms()
            else:
                value = rng.choice(WORDS[:-1])
            out.append((item["key"], value, fails or photo == "always"))
    return out


@dataclass
class Ledger:
    """Every record devices created or deleted (thread-safe)."""

    created: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    deleted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    children: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def made(self, table: str, rid: str, device: str) -> None:
        """A device created a record."""
        with self.lock:
            self.created[table][rid] = device

    def gone(self, table: str, rid: str) -> None:
        """A device deleted a record."""
        with self.lock:
            self.deleted[table].add(rid)


class Phone:
    """One install: a WatermelonDB-like local database synced through a Transport."""

    def __init__(
        self,
        name: str,
        email: str,
        role: str,
        user_id: str,
        token: str,
        port: int,
        tally: Tally,
        ledger: Ledger,
        seed: int,
        retry_after_cap: float = 5.0,
    ) -> None:
        self.name, self.email, self.role, self.user_id = name, email, role, user_id
        self.tally, self.ledger = tally, ledger
        self.rng = random.Random(seed)
        self.transport = Transport(Http(port), name, tally, retry_after_cap=retry_after_cap)
        self.device = Device(self.transport, token, name)
        self.uploads: dict[str, bytes] = {}
        self.mine: set[str] = set()  # inspections this install created
        self.stats: Counter = Counter()
        self.unexpected: list[str] = []

    # --- sync -------------------------------------------------------------------------

    def sync(self) -> bool:
        """One synchronize(); False when it must be retried later."""
        try:
            self.device.sync()
        except SyncFailed as exc:
            if exc.status == 409:
                self.stats["stale_409"] += 1  # the protocol's "pull, then push again"
            else:
                self.stats["refused"] += 1
                self.unexpected.append(f"{self.name}: sync {exc.status} {str(exc.body)[:200]}")
            return False
        except Dropped:
            self.stats["sync_failed"] += 1
            return False
        self.stats["syncs"] += 1
        return True

    def settle(self, attempts: int = 8) -> bool:
        """Sync until nothing local is left to push."""
        return any(self.sync() and not self.device.dirty() for _ in range(attempts))

    def upload_pending(self) -> None:
        """Push queued photo bytes for attachments whose records have synced."""
        for att_id, data in list(self.uploads.items()):
            rec = self.device.db["attachments"].get(att_id)
            if rec is None:  # deleted locally, or removed by the server
                self.uploads.pop(att_id)
                continue
            if rec["_status"] != "synced":
                continue
            try:
                ok = self._upload(att_id, data)
            except Dropped:
                self.stats["upload_failed"] += 1
                continue
            if ok:
                self.uploads.pop(att_id)

    def _upload(self, att_id: str, data: bytes) -> bool:
        """The attachment flow: request, PUT the bytes, complete; every step repeatable."""
        base = f"/api/v1/attachments/{att_id}"
        sha = hashlib.sha256(data).hexdigest()
        meta = {"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"}
        reply = self.transport.post(f"{base}/upload", self.device.headers(), meta)
        if reply.status == 404:
            return True  # the record was deleted (its inspection went away): nothing to send
        if reply.status != 200:
            self.unexpected.append(f"{self.name}: upload {reply.status} {reply.body[:200]!r}")
            return False
        body = reply.json()
        if not body.get("already_uploaded"):
            headers = body.get("headers") or {}
            if body["url"].startswith("http"):
                put = request_url("PUT", body["url"], data, headers)
            else:
                put = self.transport.send(
                    "PUT", body["url"], data, {**self.device.headers(), **headers}
                )
            if put.status not in (200, 201):
                self.stats["put_failed"] += 1
                return False
        done = self.transport.send("POST", f"{base}/complete", None, self.device.headers())
        if done.status == 200:
            self.stats["photos"] += 1
            return True
        if done.status != 503:
            self.unexpected.append(f"{self.name}: complete {done.status} {done.body[:200]!r}")
        return False

    # --- what people do offline -----------------------------------------------------------

    def templates(self) -> list[dict]:
        """Published template versions this device holds, of the keys we use."""
        return [
            t for t in self.device.live("templates").values() if t["template_key"] in TEMPLATE_KEYS
        ]

    def create_inspection(self, fail_rate: float = 0.15) -> str | None:
        """Start an inspection and answer every item; failed items get a photo."""
        templates, sites = self.templates(), list(self.device.live("sites").values())
        if not templates or not sites:
            return None
        template = self.rng.choice(templates)
        site = self.rng.choice(sites)
        dev = self.device
        iid = dev.create(
            "inspections",
            template_id=template["id"],
            site_id=site["id"],
            status="in_progress",
            started_at=now_ms(),
            area=f"Room {self.rng.randint(100, 1999)}",
            mode="spot_check",
        )
        self.ledger.made("inspections", iid, self.name)
        self.mine.add(iid)
        count = 0
        for key, value, photo in answers_for(orjson.loads(template["body"]), self.rng, fail_rate):
            rid = dev.create(
                "responses",
                inspection_id=iid,
                item_key=key,
                value=None if value is None else orjson.dumps(value).decode(),
                answered_at=now_ms(),
            )
            self.ledger.made("responses", rid, self.name)
            count += 1
            if photo:
                data = jpeg(self.rng)
                aid = dev.create(
                    "attachments",
                    inspection_id=iid,
                    response_id=rid,
                    kind="photo",
                    sha256=hashlib.sha256(data).hexdigest(),
                    mime="image/jpeg",
                    byte_size=len(data),
                    captured_at=now_ms(),
                )
                self.ledger.made("attachments", aid, self.name)
                self.uploads[aid] = data
        with self.ledger.lock:
            self.ledger.children[iid] = count
        self.stats["created"] += 1
        return iid

    def _editable(self, only_mine: bool = False) -> list[str]:
        """In-progress inspections this person may edit (inspectors: their own only)."""
        out = []
        for rid, rec in self.device.live("inspections").items():
            if rec.get("status") != "in_progress":
                continue
            if only_mine and rid not in self.mine:
                continue
            if self.role == "inspector" and rec.get("inspector_id") not in (None, self.user_id):
                continue
            out.append(rid)
        return sorted(out)

    def edit_shared(self) -> None:
        """Edit an inspection another install (or person) is also working on."""
        ids = self._editable()
        if not ids:
            return
        iid = self.rng.choice(ids)
        dev = self.device
        if self.role != "inspector" or self.rng.random() < 0.5:
            col = self.rng.choice(("notes", "area")) if self.role == "inspector" else "notes"
            dev.update("inspections", iid, **{col: f"{self.rng.choice(WORDS)} {self.name}"})
        else:
            texts = [
                rid
                for rid, r in dev.live("responses").items()
                if r.get("inspection_id") == iid and r.get("item_key") in ("REMARKS", "STAFF")
            ]
            if texts:
                value = orjson.dumps(f"{self.rng.choice(WORDS)} {self.name}").decode()
                dev.update("responses", self.rng.choice(texts), value=value, answered_at=now_ms())
        self.stats["edits"] += 1

    def complete_one(self) -> None:
        """Complete one of this install's inspections (it locks for review)."""
        ids = self._editable(only_mine=True)
        if ids:
            iid = self.rng.choice(ids)
            self.device.update("inspections", iid, status="completed", completed_at=now_ms())
            self.stats["completed"] += 1

    def delete_one(self) -> None:
        """Delete one of this install's in-progress inspections with its answers and photos."""
        ids = self._editable(only_mine=True)
        if not ids:
            return
        iid = self.rng.choice(ids)
        dev = self.device
        for table in ("attachments", "responses"):
            for rid, rec in list(dev.live(table).items()):
                if rec.get("inspection_id") == iid:
                    dev.delete(table, rid)
                    self.ledger.gone(table, rid)
                    self.uploads.pop(rid, None)
        dev.delete("inspections", iid)
        self.ledger.gone("inspections", iid)
        self.stats["deleted"] += 1

    def step(self) -> None:
        """A few offline actions, then a sync and the upload queue."""
        for _ in range(self.rng.randint(1, 3)):
            roll = self.rng.random()
            if self.role != "inspector":
                self.edit_shared()
            elif roll < 0.35:
                self.create_inspection()
            elif roll < 0.75:
                self.edit_shared()
            elif roll < 0.9:
                self.complete_one()
            else:
                self.delete_one()
        self.sync()
        self.upload_pending()

    def run_until(self, deadline: float, pause: tuple[float, float], stop: threading.Event) -> None:
        """Work and sync until the deadline."""
        while time.time() < deadline and not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # a crash of the simulation itself must show in the report
                self.unexpected.append(f"{self.name}: {exc!r}")
                self.stats["crashed"] += 1
                return
            stop.wait(self.rng.uniform(*pause))


def observer_snapshot(port: int, token: str, name: str, tally: Tally) -> dict:
    """A fresh install's first full sync: what the server holds for this person."""
    dev = Device(Transport(Http(port), name, tally), token, name)
    dev.sync()
    return data_of(dev.snapshot())


def data_of(snapshot: dict) -> dict:
    """The records as data (base_rev is the device's own bookkeeping)."""
    return {
        t: {rid: {k: v for k, v in rec.items() if k != "base_rev"} for rid, rec in recs.items()}
        for t, recs in snapshot.items()
    }


def diverged(phone: Phone, truth: dict) -> list[str]:
    """Where a device differs from a fresh pull of the same person."""
    mine = data_of(phone.device.snapshot())
    out = []
    for table in TABLES:
        a, b = mine[table], truth[table]
        if a == b:
            continue
        extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        out.append(f"{table}: extra {extra[:3]} missing {missing[:3]} differ {changed[:3]}")
    return out


def server_facts(url: str, ledger: Ledger) -> dict[str, Any]:
    """Lost, duplicated and half-applied records, read from the database itself."""
    facts: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        live: dict[str, set[str]] = {}
        dead: dict[str, set[str]] = {}
        for table in PUSHABLE:
            rows = conn.execute(f"SELECT id, deleted_at IS NULL FROM {table}").fetchall()
            live[table] = {r[0] for r in rows if r[1]}
            dead[table] = {r[0] for r in rows if not r[1]}
        lost, kept_as_conflict, undeleted = [], 0, []
        conflict_ids = {r[0] for r in conn.execute("SELECT record_id FROM conflicts").fetchall()}
        created = tombstoned = 0
        for table, made in ledger.created.items():
            for rid in made:
                created += 1
                if rid in ledger.deleted[table]:
                    # Deleted before it ever synced, or tombstoned; never live again.
                    tombstoned += rid in dead[table]
                    if rid in live[table]:
                        undeleted.append(f"{table}:{rid}")
                    continue
                if rid not in live[table]:
                    if rid in conflict_ids:
                        kept_as_conflict += 1
                    else:
                        lost.append(f"{table}:{rid}")
        facts["created"] = created
        facts["created_by_table"] = {t: len(v) for t, v in ledger.created.items()}
        facts["lost"] = lost
        facts["kept_as_conflict"] = kept_as_conflict
        facts["deleted"] = sum(len(v) for v in ledger.deleted.values())
        facts["tombstoned"] = tombstoned
        facts["undeleted"] = undeleted
        facts["dup_answers"] = conn.execute(
            "SELECT count(*) FROM (SELECT inspection_id, item_key FROM responses "
            "WHERE deleted_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchone()[0]
        facts["dup_actions"] = conn.execute(
            "SELECT count(*) FROM (SELECT response_id FROM actions WHERE source = 'auto' "
            "AND deleted_at IS NULL GROUP BY 1 HAVING count(*) > 1) d"
        ).fetchone()[0]
        # All-or-nothing per push: an inspection never arrives without the answers it was
        # created with (they always travel in the same push).
        counts = dict(
            conn.execute(
                "SELECT i.id, count(r.id) FROM inspections i LEFT JOIN responses r "
                "ON r.inspection_id = i.id AND r.deleted_at IS NULL "
                "WHERE i.deleted_at IS NULL GROUP BY i.id"
            ).fetchall()
        )
        facts["partial"] = [
            iid for iid, n in ledger.children.items() if iid in counts and counts[iid] != n
        ]
        facts["unstamped"] = sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE server_rev < 0").fetchone()[0]
            for t in (*PUSHABLE, "conflicts")
        )
        facts["not_uploaded"] = sorted(
            rid
            for rid in ledger.created["attachments"]
            if rid in live["attachments"]
            and not conn.execute(
                "SELECT uploaded FROM attachments WHERE id = %s", (rid,)
            ).fetchone()[0]
        )
        facts["conflicts"] = dict(
            conn.execute("SELECT kind, count(*) FROM conflicts GROUP BY kind").fetchall()
        )
        facts["live"] = {t: len(v) for t, v in live.items()}
    return facts
