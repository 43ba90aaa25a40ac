"""b. gunicorn SIGKILLed (arbiter and workers at once) in the middle of big pushes, again and
again: the database never holds part of a push, and the device's retry (same body, same
Idempotency-Key) after the restart succeeds exactly once."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from typing import Any

import orjson
import psycopg

from bench.reliability.client import Dropped, Http, Reply, Tally, Transport, login
from bench.reliability.drops import ANA
from bench.reliability.fleet import answers_for, now_ms
from bench.reliability.report import Report
from bench.reliability.server import Gunicorn, app_env, prepare_database
from tests.sync.device import Device, random_id

INSPECTIONS = 30


def push_body(template: dict, site_id: str, cursor: int) -> tuple[dict, list[str], list[str]]:
    """A big offline backlog: 30 inspections with every item answered."""
    rng = random.Random()
    insp, resp = [], []
    answers = answers_for(orjson.loads(template["body"]), rng, 0.0)
    for _ in range(INSPECTIONS):
        iid = random_id()
        insp.append(
            {
                "id": iid,
                "template_id": template["id"],
                "site_id": site_id,
                "status": "in_progress",
                "started_at": now_ms(),
                "area": "backlog",
            }
        )
        for key, value, _photo in answers:
            resp.append(
                {
                    "id": random_id(),
                    "inspection_id": iid,
                    "item_key": key,
                    "value": None if value is None else orjson.dumps(value).decode(),
                    "answered_at": now_ms(),
                }
            )
    body = {
        "changes": {
            "inspections": {"created": insp, "updated": [], "deleted": []},
            "responses": {"created": resp, "updated": [], "deleted": []},
        },
        "last_pulled_at": cursor,
    }
    return body, [i["id"] for i in insp], [r["id"] for r in resp]


def post_push(port: int, token: str, raw: bytes, key: str) -> Reply:
    """One push on a fresh connection (Dropped when the server dies under it)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Device-Id": "backlog-phone",
        "Content-Type": "application/json",
        "Idempotency-Key": key,
    }
    client = Http(port, timeout=120)
    try:
        return client.request("POST", "/api/v1/sync/push", raw, headers)
    finally:
        client.close()


def wait_for_write(url: str, sender: threading.Thread, limit: float = 30.0) -> bool:
    """Block until a transaction holds a transaction id (is writing); False if none did."""
    deadline = time.time() + limit
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline and sender.is_alive():
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
            ).fetchone()[0]
            if busy:
                return True
            time.sleep(0.001)
    return False


def wait_for_commit(url: str, key: str, limit: float = 30.0) -> None:
    """Block until the push's idempotency record (written in its transaction) is committed."""
    deadline = time.time() + limit
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            if conn.execute("SELECT 1 FROM idempotency_records WHERE key = %s", (key,)).fetchone():
                return
            time.sleep(0.0005)
    raise RuntimeError("the push never committed")


def counter(url: str) -> int:
    """The deployment's rev counter."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT value FROM sync_counter WHERE id = 1").fetchone()[0]


def counts(url: str, key: str, insp: list[str], resp: list[str]) -> tuple[int, int, int, int]:
    """(inspections, responses, idempotency records, unstamped rows) of one push."""
    with psycopg.connect(url, autocommit=True) as conn:
        n_insp = conn.execute(
            "SELECT count(*) FROM inspections WHERE id = ANY(%s)", (insp,)
        ).fetchone()[0]
        n_resp = conn.execute(
            "SELECT count(*) FROM responses WHERE id = ANY(%s)", (resp,)
        ).fetchone()[0]
        n_key = conn.execute(
            "SELECT count(*) FROM idempotency_records WHERE key = %s", (key,)
        ).fetchone()[0]
        unstamped = sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE server_rev < 0").fetchone()[0]
            for t in ("inspections", "responses", "conflicts")
        )
    return n_insp, n_resp, n_key, unstamped


def run(report: Report, cluster: Any, kills: int) -> None:
    """Scenario b."""
    report.section("b", f"gunicorn SIGKILLed mid-push {kills} times, restarted each time")
    url = cluster.create_database("rel_kills")
    env = app_env(url)
    prepare_database(env)
    # Two workers: each restart boots the app in every worker, on a small machine.
    server = Gunicorn(env, workers=2, threads=4)
    server.start()
    try:
        _run(report, server, url, kills)
    finally:
        server.stop()
        server.log.close()


def _run(report: Report, server: Gunicorn, url: str, kills: int) -> None:
    token, _user = login(server.port, ANA)
    phone = Device(Transport(Http(server.port), "backlog-phone", Tally()), token, "backlog-phone")
    cursor = phone.pull()
    template = next(
        t for t in phone.live("templates").values() if t["template_key"] == "staff_grooming_conduct"
    )
    site = next(s["id"] for s in phone.live("sites").values() if s["code"] == "N-HOTEL")
    partial, failed_retries, restarts, retries = 0, 0, [], []
    before = after = answered = double = 0
    rng = random.Random(3)
    for n in range(kills):
        body, insp, resp = push_body(template, site, cursor)
        raw = orjson.dumps(body)
        key = hashlib.sha256(b"backlog-phone\n" + raw).hexdigest()
        if n == 0:
            report.figure(
                "push_size",
                f"{len(insp)}+{len(resp)}",
                "records",
                note=f"{len(raw) // 1024} KiB, one transaction",
            )
        result: dict[str, Any] = {}

        def send(raw: bytes = raw, key: str = key, result: dict = result) -> None:
            try:
                result["reply"] = post_push(server.port, token, raw, key)
            except Dropped as exc:
                result["dropped"] = exc

        thread = threading.Thread(target=send)
        thread.start()
        if n % 2 == 0:
            # While the rows are being written...
            if wait_for_write(url, thread):
                time.sleep(rng.uniform(0, 0.02))
        else:
            # ...or the instant the commit is visible, before the answer leaves.
            wait_for_commit(url, key)
        server.kill()
        thread.join()
        n_insp, n_resp, n_key, unstamped = counts(url, key, insp, resp)
        applied = (n_insp, n_resp, n_key) == (len(insp), len(resp), 1)
        nothing = (n_insp, n_resp, n_key) == (0, 0, 0)
        if not (applied or nothing) or unstamped:
            partial += 1
            report.figure(
                f"kill_{n + 1}",
                f"{n_insp}/{n_resp}/{n_key}",
                ok=False,
                note=f"partial: inspections/responses/idempotency; unstamped {unstamped}",
            )
        if "reply" in result:
            answered += 1  # the answer got out just before the kill
        elif applied:
            after += 1
        else:
            before += 1
        start = time.perf_counter()
        server.start()
        restarts.append(time.perf_counter() - start)
        rev_before = counter(url)
        start = time.perf_counter()
        reply = post_push(server.port, token, raw, key)
        retries.append(time.perf_counter() - start)
        n_insp, n_resp, n_key, unstamped = counts(url, key, insp, resp)
        # A retry of an applied push must be a replay: no new revs, nothing written twice.
        if applied and counter(url) != rev_before:
            double += 1
        if reply.status != 200 or (n_insp, n_resp, n_key, unstamped) != (
            len(insp),
            len(resp),
            1,
            0,
        ):
            failed_retries += 1
            report.figure(
                f"retry_{n + 1}",
                reply.status,
                ok=False,
                note=f"{n_insp}/{n_resp}/{n_key} {reply.body[:200]!r}",
            )
    report.figure("kills", kills, "SIGKILL")
    report.figure("killed_before_commit", before, note="nothing applied; the retry applied it")
    report.figure(
        "killed_after_commit", after, note="all applied, answer lost; the retry replayed it"
    )
    if answered:
        report.figure("killed_after_answer", answered, note="too late to hurt; retried anyway")
    report.check("partial_pushes", partial)
    report.check("applied_twice", double)
    report.figure("retries_succeeded", f"{kills - failed_retries}/{kills}", ok=not failed_retries)
    report.timing("restart_time", restarts, "SIGKILL to a worker answering again")
    report.timing("retry_latency", retries, "the device's retried push")
    _racing_retries(report, server, url, token, template, site, cursor)
    errors = server.log_errors()
    report.check("server_log_errors", len(errors), errors[:2])


def _racing_retries(
    report: Report, server: Gunicorn, url: str, token: str, template: dict, site: str, cursor: int
) -> None:
    """The same push twice at once (a client timed out and retried), then once more."""
    # One applies, the other is refused cleanly (409), the later retry replays the answer.
    statuses: Counter = Counter()
    wrong = 0
    for _ in range(3):
        body, insp, resp = push_body(template, site, cursor)
        # The inspections first, then their answers as a push of their own (a batch big
        # enough for the COPY path), twice at once with the same key.
        answers = body["changes"].pop("responses")
        first = post_push(server.port, token, orjson.dumps(body), random_id())
        body = {"changes": {"responses": answers}, "last_pulled_at": cursor}
        raw = orjson.dumps(body)
        key = random_id()
        replies: list[Any] = []

        def send(raw: bytes = raw, key: str = key, replies: list = replies) -> None:
            replies.append(post_push(server.port, token, raw, key))

        pair = [threading.Thread(target=send) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        statuses.update(r.status for r in replies)
        again = post_push(server.port, token, raw, key)
        n_insp, n_resp, n_key, _ = counts(url, key, insp, resp)
        if (
            first.status != 200
            or again.status != 200
            or (n_insp, n_resp, n_key)
            != (
                len(insp),
                len(resp),
                1,
            )
        ):
            wrong += 1
    report.figure(
        "racing_retry_answers",
        ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
        ok=all(k < 500 for k in statuses),
        note="same push twice at once (client timeout); 409 = the duplicate was refused",
    )
    report.check("racing_retry_not_exactly_once", wrong)
