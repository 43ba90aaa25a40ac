"""d. The blob store (S3: moto's server over real HTTP) becomes unreachable: photo uploads fail
with 503 + Retry-After, sync push and pull keep working, and once the store is back the
device's upload retry succeeds."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from typing import Any

import orjson

from bench.reliability.client import Dropped, Reply, Tally, login, request_url
from bench.reliability.drops import ANA
from bench.reliability.fleet import Ledger, Phone, diverged, observer_snapshot
from bench.reliability.report import Report
from bench.reliability.server import Gunicorn, app_env, free_port, prepare_database

BUCKET = "evidence"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Moto:
    """moto's S3 in server mode in this process; its buckets survive a stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: Any = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve on the same port as before."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        """Stop answering (connections are refused)."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def _upload_steps(phone: Phone, att_id: str, data: bytes) -> dict[str, Any]:
    """The three steps once, without retries; what each answered and how fast."""
    headers = phone.device.headers()
    base = f"/api/v1/attachments/{att_id}"
    meta = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "byte_size": len(data),
        "mime": "image/jpeg",
    }
    out: dict[str, Any] = {}
    start = time.perf_counter()
    req: Reply = phone.transport.http.request(
        "POST",
        f"{base}/upload",
        orjson.dumps(meta),
        {**headers, "Content-Type": "application/json"},
    )
    out["upload"] = (req.status, req.headers.get("retry-after"), time.perf_counter() - start)
    body = req.json() or {}
    if req.status == 200 and body.get("url"):
        start = time.perf_counter()
        try:
            put = request_url("PUT", body["url"], data, body.get("headers") or {})
            out["put"] = (put.status, None, time.perf_counter() - start)
        except Dropped:
            out["put"] = ("refused", None, time.perf_counter() - start)
    start = time.perf_counter()
    done = phone.transport.http.request("POST", f"{base}/complete", None, headers)
    out["complete"] = (done.status, done.headers.get("retry-after"), time.perf_counter() - start)
    return out


def run(report: Report, cluster: Any, outage: float) -> None:
    """Scenario d."""
    report.section("d", f"blob store (S3 on moto's server) unreachable for {outage:.0f} s")
    for key, value in CREDENTIALS.items():
        os.environ.setdefault(key, value)
    moto = Moto()
    moto.start()
    try:
        import boto3

        boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1").create_bucket(
            Bucket=BUCKET
        )
        url = cluster.create_database("rel_blobs")
        env = app_env(
            url,
            MEDIA_STORE="s3",
            S3_BUCKET=BUCKET,
            S3_ENDPOINT_URL=moto.endpoint,
            S3_REGION="us-east-1",
            **CREDENTIALS,
        )
        prepare_database(env)
        with Gunicorn(env, workers=2, threads=4) as server:
            _run(report, server, moto, outage)
    finally:
        with contextlib.suppress(Exception):
            moto.stop()


def _run(report: Report, server: Gunicorn, moto: Moto, outage: float) -> None:
    tally, ledger = Tally(), Ledger()
    token, user_id = login(server.port, ANA)
    phone = Phone("ana-phone", ANA, "inspector", user_id, token, server.port, tally, ledger, 11)
    tablet = Phone("ana-tablet", ANA, "inspector", user_id, token, server.port, tally, ledger, 12)
    phone.settle()
    tablet.settle()
    while len(phone.uploads) < 2:
        phone.create_inspection(fail_rate=1.0)
    phone.settle()
    first, second = list(phone.uploads)[:2]
    steps = _upload_steps(phone, first, phone.uploads.pop(first))
    report.figure(
        "upload_with_store_up",
        steps["complete"][0],
        ok=steps["complete"][0] == 200,
        note=", ".join(f"{k} {v[0]}" for k, v in steps.items()),
    )

    moto.stop()
    t_down = time.time()
    data = phone.uploads[second]
    # While the store is away the device keeps working: its upload queue retries, and it
    # goes on syncing new inspections that another device pulls.
    completes, slow, syncs, synced, seen, new_ids = [], 0, 0, 0, 0, []
    while time.time() - t_down < outage:
        steps = _upload_steps(phone, second, data)
        completes.append(steps["complete"])
        slow += sum(1 for v in steps.values() if v[2] > 2)
        iid = phone.create_inspection(fail_rate=0.0)
        new_ids.append(iid)
        syncs += 1
        synced += phone.settle() and tablet.settle()
        seen += iid is not None and tablet.device.get("inspections", iid) is not None
        time.sleep(0.5)
    good = [c for c in completes if c[0] == 503 and c[1]]
    report.figure(
        "upload_attempts_while_down",
        len(completes),
        ok=len(good) == len(completes),
        note=f"{len(good)} answered 503 with Retry-After {completes[0][1]} (complete, max "
        f"{max(c[2] for c in completes) * 1000:.0f} ms); the upload request itself is 200 "
        f"(presigning needs no S3 call) and the PUT to S3 is refused",
    )
    report.check("upload_while_down_slow_over_2s", slow)
    report.figure("sync_push_while_down", f"{synced}/{syncs}", ok=synced == syncs)
    report.figure(
        "sync_pull_while_down",
        f"{seen}/{syncs}",
        ok=seen == syncs,
        note="new inspections another device received",
    )
    health = phone.transport.http.request("GET", "/api/v1/health", None, {})
    state = health.json() or {}
    report.figure(
        "health_while_down",
        health.status,
        ok=health.status == 200 and state.get("storage") == "unavailable",
        note=f"status {state.get('status')}, storage {state.get('storage')}: "
        "the instance stays in the load balancer, sync keeps working",
    )
    report.check(
        "server_errors_5xx", sum(v for k, v in tally.counts.items() if k.startswith("5xx"))
    )

    moto.start()
    t_up = time.time()
    report.figure("store_down_for", t_up - t_down, "s")
    # The device's upload queue retries: request, PUT, complete, all of it repeatable.
    recovered = None
    for _ in range(50):
        steps = _upload_steps(phone, second, data)
        if steps["complete"][0] == 200:
            recovered = time.time() - t_up
            break
        time.sleep(0.1)
    report.figure(
        "upload_retry_after_store_back",
        steps["complete"][0],
        ok=recovered is not None,
        note=f"{recovered:.2f} s after the store came back" if recovered else "",
    )
    phone.uploads.pop(second, None)
    phone.settle()
    tablet.settle()
    att = tablet.device.get("attachments", second)
    report.figure(
        "other_device_sees_uploaded",
        bool(att and att.get("uploaded")),
        ok=bool(att and att.get("uploaded")),
    )
    fetched = phone.transport.http.request(
        "GET", f"/api/v1/attachments/{second}/file?variant=thumb", None, phone.device.headers()
    )
    got = None
    if fetched.status == 302:
        got = request_url("GET", fetched.headers["location"], None, {}).status
    report.figure(
        "thumbnail_fetch",
        got or fetched.status,
        ok=(got or fetched.status) == 200,
        note="302 to a presigned GET, then 200 from the store",
    )
    truth = observer_snapshot(server.port, token, "observer", tally)
    bad = diverged(phone, truth) + diverged(tablet, truth)
    report.check("devices_diverged", len(bad), bad[:2])
    errors = server.log_errors()
    report.check("server_log_errors", len(errors), errors[:2])
