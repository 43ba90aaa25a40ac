"""c. The database goes away under load (a clean fast shutdown, then a crash) and comes back:
while it is down requests fail fast with 503 + Retry-After; afterwards the same gunicorn
serves again by itself; nothing half-written remains and devices converge."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.reliability.client import Dropped, Http, Tally, login
from bench.reliability.drops import ANA, converge_checks, make_phones, settle_all
from bench.reliability.fleet import Ledger
from bench.reliability.report import Report, summary
from bench.reliability.server import Gunicorn, app_env, prepare_database

SLOW = 2.0  # seconds: an answer slower than this while the database is down counts as a hang


def workers_of(pid: int) -> set[int]:
    """gunicorn's worker processes (children of the arbiter), from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


class Prober(threading.Thread):
    """A device pulling in a loop; every answer is kept with its time and latency."""

    def __init__(self, port: int, token: str, path: str, pause: float, device: str) -> None:
        super().__init__(daemon=True)
        self.http = Http(port, timeout=60)
        self.path, self.pause = path, pause
        self.headers = {"Authorization": f"Bearer {token}", "X-Device-Id": device}
        self.samples: list[tuple[float, float, int, str | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            start = time.time()
            try:
                reply = self.http.request("GET", self.path, None, self.headers)
                status, retry = reply.status, reply.headers.get("retry-after")
            except Dropped:
                status, retry = 0, None
            self.samples.append((start, time.time() - start, status, retry))
            self.halt.wait(self.pause)

    def between(self, a: float, b: float) -> list[tuple[float, float, int, str | None]]:
        """Samples sent in [a, b)."""
        return [s for s in self.samples if a <= s[0] < b]


def run(report: Report, cluster: Any, outage: float, devices: int) -> None:
    """Scenario c."""
    report.section("c", f"PostgreSQL stopped for {outage:.0f} s twice (fast, then crash)")
    url = cluster.create_database("rel_dbdown")
    env = app_env(url)
    prepare_database(env)
    tally, ledger = Tally(), Ledger()
    with Gunicorn(env, workers=4, threads=4) as server:
        assert server.proc is not None
        arbiter = server.proc.pid
        workers = workers_of(arbiter)
        phones = make_phones(server.port, server.port, devices, tally, ledger, cap=2.0)
        for phone in phones:
            phone.settle()
        token, _ = login(server.port, ANA)
        # A small pull every 50 ms times the outage; fresh installs doing whole first syncs
        # back to back make sure queries are in flight at the instant the database dies.
        prober = Prober(server.port, token, "/api/v1/sync/pull?limit=1", 0.05, "prober")
        installs = [
            Prober(server.port, token, "/api/v1/sync/pull", 0.0, f"new-install-{n}")
            for n in range(3)
        ]
        for p in (prober, *installs):
            p.start()
        stop = threading.Event()
        threads = [
            threading.Thread(target=p.run_until, args=(time.time() + 3600, (0.05, 0.3), stop))
            for p in phones
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(3)
            for mode in ("fast", "immediate"):
                _outage(report, cluster, [prober, *installs], mode, outage)
                time.sleep(3)
        finally:
            stop.set()
            for t in threads:
                t.join()
            for p in (prober, *installs):
                p.halt.set()
                p.join()
        statuses = Counter(s[2] for p in (prober, *installs) for s in p.samples)
        report.figure(
            "probe_answers",
            sum(statuses.values()),
            note=", ".join(f"{k or 'no answer'}: {v}" for k, v in sorted(statuses.items())),
        )
        report.check(
            "probe_errors_not_503", sum(v for k, v in statuses.items() if k not in (200, 503))
        )
        device_503 = sum(v for k, v in tally.counts.items() if k.startswith("503"))
        report.figure(
            "device_requests_503",
            device_503,
            note="each waited Retry-After (capped at 2 s), retried",
        )
        report.check("gunicorn_restarted", int(not server.alive() or server.proc.pid != arbiter))
        report.check("workers_replaced", len(workers - workers_of(arbiter)))
        rounds = settle_all(phones)
        report.figure("final_sync_rounds", rounds)
        stats = sum((p.stats for p in phones), Counter())
        report.figure(
            "syncs_completed",
            stats["syncs"],
            note=f"given up then redone {stats['sync_failed']}, stale 409 {stats['stale_409']}",
        )
        report.check("device_crashes", stats["crashed"])
        converge_checks(report, phones, server.port, url, ledger, tally)
        errors = server.log_errors()
        report.check("server_log_errors", len(errors), errors[:2])


def _outage(report: Report, cluster: Any, probers: list[Prober], mode: str, outage: float) -> None:
    """Stop the database, keep it down, start it; report how the service behaved."""

    def between(a: float, b: float) -> list[tuple[float, float, int, str | None]]:
        return sorted(s for p in probers for s in p.between(a, b))

    t_stop = time.time()
    cluster.stop(mode)
    t_down = time.time()
    time.sleep(outage)
    t_start = time.time()
    cluster.start()
    t_up = time.time()
    # Recovery: the first good answer after the database accepts connections again.
    deadline = t_up + 60
    while time.time() < deadline:
        ok = [s for s in between(t_up, time.time()) if s[2] == 200]
        if ok:
            break
        time.sleep(0.05)
    down = between(t_down, t_start)
    first_503 = min((s[0] + s[1] for s in between(t_stop, t_start) if s[2] == 503), default=None)
    report.figure(f"{mode}_stop_took", t_down - t_stop, "s", note=f"pg_ctl stop -m {mode}")
    report.figure(
        f"{mode}_time_to_fail",
        (first_503 - t_stop) if first_503 else "never",
        "s",
        ok=first_503 is not None,
        note="from the stop command to the first 503 a device received",
    )
    latencies = [s[1] for s in down]
    report.figure(f"{mode}_answers_while_down", len(down), note=summary(latencies))
    bad = [s for s in down if s[2] != 503 or not s[3]]
    report.check(
        f"{mode}_not_503_retry_after", len(bad), Counter(s[2] for s in bad) if bad else None
    )
    report.check(f"{mode}_answers_over_{SLOW:.0f}s", sum(1 for s in down if s[1] > SLOW))
    recovered = min((s[0] + s[1] for s in between(t_up, time.time()) if s[2] == 200), default=None)
    report.figure(
        f"{mode}_time_to_recover",
        (recovered - t_up) if recovered else "never",
        "s",
        ok=recovered is not None,
        note=f"database back after {t_up - t_start:.1f} s of pg_ctl start; "
        "first 200 from the same gunicorn",
    )
