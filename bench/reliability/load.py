"""e. Load: client threads with a realistic mix (incremental pulls, one-inspection pushes,
photo uploads, managers reading the review queue and inspections, HQ compliance summaries)
against gunicorn (4 gthread workers) + PostgreSQL; throughput and p50/p95/p99 per operation."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.reliability.client import Dropped, Http, login
from bench.reliability.drops import ANA, BEN, NORTH
from bench.reliability.fleet import TEMPLATE_KEYS, answers_for, now_ms
from bench.reliability.photos import camera_jpeg, unique
from bench.reliability.report import Report, percentile
from bench.reliability.server import Gunicorn, app_env, prepare_database
from tests.sync.device import random_id

HQ = "hq@demo.example"
# What a day looks like: phones pull far more often than they push; one photo per few pushes.
MIX = {
    "pull": 40,
    "push_inspection": 20,
    "photo_upload": 10,
    "review_queue": 10,
    "review_detail": 10,
    "compliance_summary": 10,
}
GROUPINGS = ("site,template", "region,week", "template", "inspector,month")


class Shared:
    """What the clients learn from each other (inspection ids for managers to open)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.north_ids: list[str] = []
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)


class Client:
    """One simulated user session on its own keep-alive connection."""

    def __init__(self, n: int, port: int, ctx: dict[str, Any], shared: Shared) -> None:
        self.rng = random.Random(5000 + n)
        self.http = Http(port, timeout=120)
        self.ctx, self.shared = ctx, shared
        self.email = (ANA, BEN)[n % 2]
        self.device = f"load-{n}"
        self.cursor: int | None = None
        self.photos: list[tuple[str, bytes]] = []
        self.measure = False

    def headers(self, email: str | None = None, **extra: str) -> dict[str, str]:
        """Bearer token of `email` (this client's inspector by default) and the device id."""
        token = self.ctx["tokens"][email or self.email]
        return {"Authorization": f"Bearer {token}", "X-Device-Id": self.device, **extra}

    def call(
        self,
        op: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
    ) -> Any:
        """One request; a non-expected status or a broken connection is an error of `op`."""
        try:
            reply = self.http.request(method, path, body, headers or self.headers())
        except Dropped as exc:
            self.error(op, repr(exc))
            return None
        if reply.status != 200:
            self.error(op, f"{reply.status} {reply.body[:160]!r}")
            return None
        return (
            reply.json()
            if reply.headers.get("content-type", "").startswith("application/json")
            else reply
        )

    def error(self, op: str, what: str) -> None:
        """Remember a failed operation (warm-up failures separately)."""
        with self.shared.lock:
            self.shared.errors[op if self.measure else f"warm-up {op}"].append(what)

    # --- operations -----------------------------------------------------------------------

    def pull(self) -> bool:
        """Incremental sync pull from this device's cursor, every page."""
        while True:
            query = {} if self.cursor is None else {"last_pulled_at": self.cursor}
            body = self.call("pull", "GET", f"/api/v1/sync/pull?{urlencode(query)}")
            if body is None:
                return False
            self.cursor = body["timestamp"]
            if not body.get("has_more"):
                return True

    def push_inspection(self) -> bool:
        """Push one completed inspection: every answer, photo records for failed items."""
        template = self.rng.choice(self.ctx["templates"])
        site = self.rng.choice(self.ctx["sites"][self.email])
        iid = random_id()
        responses, attachments = [], []
        for key, value, photo in answers_for(template["body"], self.rng, 0.1):
            rid = random_id()
            responses.append(
                {
                    "id": rid,
                    "inspection_id": iid,
                    "item_key": key,
                    "answered_at": now_ms(),
                    "value": None if value is None else orjson.dumps(value).decode(),
                }
            )
            if photo:
                data = unique(self.rng.choice(self.ctx["photos"]), self.rng)
                aid = random_id()
                attachments.append(
                    {
                        "id": aid,
                        "inspection_id": iid,
                        "response_id": rid,
                        "kind": "photo",
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "mime": "image/jpeg",
                        "byte_size": len(data),
                        "captured_at": now_ms(),
                    }
                )
                self.photos.append((aid, data))
        inspection = {
            "id": iid,
            "template_id": template["id"],
            "site_id": site,
            "status": "completed",
            "started_at": now_ms() - 600_000,
            "completed_at": now_ms(),
            "area": "load",
        }
        none: list = []
        raw = orjson.dumps(
            {
                "changes": {
                    "inspections": {"created": [inspection], "updated": none, "deleted": none},
                    "responses": {"created": responses, "updated": none, "deleted": none},
                    "attachments": {"created": attachments, "updated": none, "deleted": none},
                },
                "last_pulled_at": self.cursor,
            }
        )
        key = hashlib.sha256(self.device.encode() + b"\n" + raw).hexdigest()
        headers = self.headers(**{"Content-Type": "application/json", "Idempotency-Key": key})
        return self.call("push_inspection", "POST", "/api/v1/sync/push", raw, headers) is not None

    def photo_upload(self) -> bool:
        """The attachment flow for one queued photo: request, PUT the bytes, complete."""
        aid, data = self.photos.pop()
        meta = orjson.dumps(
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "byte_size": len(data),
                "mime": "image/jpeg",
            }
        )
        base = f"/api/v1/attachments/{aid}"
        json_headers = self.headers(**{"Content-Type": "application/json"})
        body = self.call("photo_upload", "POST", f"{base}/upload", meta, json_headers)
        if body is None:
            return False
        if not body.get("already_uploaded"):
            put = self.call(
                "photo_upload", "PUT", body["url"], data, self.headers(**body.get("headers", {}))
            )
            if put is None:
                return False
        return self.call("photo_upload", "POST", f"{base}/complete") is not None

    def review_queue(self) -> bool:
        """A regional manager's first page of completed inspections."""
        body = self.call(
            "review_queue",
            "GET",
            "/api/v1/inspections?status=completed&page=1&page_size=20",
            headers=self.headers(NORTH),
        )
        if body is None:
            return False
        with self.shared.lock:
            for row in body:
                if row["id"] not in self.shared.north_ids:
                    self.shared.north_ids.append(row["id"])
            del self.shared.north_ids[:-500]
        return True

    def review_detail(self) -> bool:
        """A regional manager opens one inspection from the queue."""
        with self.shared.lock:
            iid = self.rng.choice(self.shared.north_ids[-100:])
        return (
            self.call(
                "review_detail", "GET", f"/api/v1/inspections/{iid}", headers=self.headers(NORTH)
            )
            is not None
        )

    def compliance_summary(self) -> bool:
        """HQ's compliance summary over the last five weeks, grouped one of several ways."""
        end = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        query = urlencode(
            {
                "start": (end - dt.timedelta(days=35)).isoformat(),
                "end": end.isoformat(),
                "group_by": self.rng.choice(GROUPINGS),
            }
        )
        return (
            self.call(
                "compliance_summary",
                "GET",
                f"/api/v1/reports/compliance?{query}",
                headers=self.headers(HQ),
            )
            is not None
        )

    def run(self, deadline: float) -> None:
        """Operations drawn from the mix until the deadline."""
        ops = list(MIX)
        weights = [MIX[o] for o in ops]
        while time.time() < deadline:
            op = self.rng.choices(ops, weights)[0]
            # A photo needs a pushed attachment record, a detail view an id from the queue.
            if op == "photo_upload" and not self.photos:
                op = "push_inspection"
            if op == "review_detail" and not self.shared.north_ids:
                op = "review_queue"
            start = time.perf_counter()
            ok = getattr(self, op)()
            took = time.perf_counter() - start
            if ok and self.measure:
                with self.shared.lock:
                    self.shared.latencies[op].append(took)


def _context(port: int) -> dict[str, Any]:
    """Tokens, templates and sites every client needs (one setup pull per inspector)."""
    tokens = {e: login(port, e)[0] for e in (ANA, BEN, NORTH, HQ)}
    http = Http(port)
    sites, templates = {}, []
    for email in (ANA, BEN):
        headers = {"Authorization": f"Bearer {tokens[email]}", "X-Device-Id": "setup"}
        body = http.request("GET", "/api/v1/sync/pull", None, headers).json()
        sites[email] = [s["id"] for s in body["changes"]["sites"]["updated"]]
        templates = [
            {**t, "body": orjson.loads(t["body"])}
            for t in body["changes"]["templates"]["updated"]
            if t["template_key"] in TEMPLATE_KEYS
        ]
    return {
        "tokens": tokens,
        "sites": sites,
        "templates": templates,
        "photos": [camera_jpeg(seed) for seed in range(4)],
    }


def _phase(users: list[Client], deadline: float) -> None:
    """Every client works until the deadline, each on its own thread."""
    threads = [threading.Thread(target=c.run, args=(deadline,)) for c in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(report: Report, cluster: Any, seconds: float, clients: int) -> None:
    """Scenario e."""
    report.section(
        "e",
        f"load: {clients} clients for {seconds:.0f} s, gunicorn 4 workers x 4 "
        "threads (gthread) + PostgreSQL",
    )
    url = cluster.create_database("rel_load")
    env = app_env(url)
    prepare_database(env)
    with Gunicorn(env, workers=4, threads=4) as server:
        ctx = _context(server.port)
        shared = Shared()
        # Warm-up (not measured): a history of completed inspections, every client's first
        # sync, and the workers' first requests.
        users = [Client(n, server.port, ctx, shared) for n in range(clients)]
        _phase(users, time.time() + min(10.0, seconds / 4))
        warm_errors = sum(len(v) for k, v in shared.errors.items() if k.startswith("warm-up"))
        for c in users:
            c.measure = True
        start = time.time()
        _phase(users, start + seconds)
        elapsed = time.time() - start
        log_errors = server.log_errors()
    total = sum(len(v) for v in shared.latencies.values())
    errors = sum(len(v) for k, v in shared.errors.items() if not k.startswith("warm-up"))
    size = sum(len(p) for p in ctx["photos"]) // len(ctx["photos"]) // 1024
    what = {
        "pull": "incremental, every page",
        "push_inspection": "1 completed inspection + answers + photo records",
        "photo_upload": f"request + PUT {size} KiB 1600x1200 JPEG + complete",
        "review_queue": "manager, 20 per page",
        "review_detail": "manager",
        "compliance_summary": "HQ, 5 weeks, grouped",
    }
    for op in MIX:
        lat = shared.latencies.get(op, [])
        errs = shared.errors.get(op, [])
        report.figure(
            op,
            f"{len(lat) / elapsed:.1f}",
            "ops/s",
            note=f"n {len(lat)}, p50 {percentile(lat, 50) * 1000:.0f} ms, p95 "
            f"{percentile(lat, 95) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
            f"errors {len(errs)}; {what[op]}" + (f"; e.g. {errs[0]}" if errs else ""),
        )
    report.figure(
        "throughput",
        f"{total / elapsed:.1f}",
        "ops/s",
        note=f"{total} operations in {elapsed:.0f} s",
    )
    report.figure(
        "error_rate",
        f"{errors / max(total + errors, 1):.2%}",
        ok=errors == 0 and warm_errors == 0,
        note=f"{errors} errors" + (f", {warm_errors} in warm-up" if warm_errors else ""),
    )
    report.check("server_log_errors", len(log_errors), log_errors[:2])
