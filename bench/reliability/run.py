"""Run the reliability scenarios and print one line per figure; exit 1 if an invariant fails.

    python -m bench.reliability            # every scenario (a b c d e), about 6 minutes
    python -m bench.reliability a c        # some of them
    RELIABILITY_SECONDS=30 python -m bench.reliability   # shorter timed phases

Settings (environment): RELIABILITY_SECONDS (device phase of a, default 120; the load phase of e
runs half of it unless RELIABILITY_LOAD_SECONDS is set), RELIABILITY_DEVICES (20),
RELIABILITY_DROP_RATE (0.2), RELIABILITY_KILLS (10), RELIABILITY_OUTAGE_SECONDS (5),
RELIABILITY_LOAD_CLIENTS (16). `make reliability SCENARIOS="a c"` picks scenarios.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback

from bench.reliability import blobstore, database, drops, kills, load
from bench.reliability.pg import Cluster
from bench.reliability.report import Report
from bench.reliability.server import WORKDIR

SCENARIOS = "abcde"


def _num(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def main(argv: list[str]) -> int:
    """Run the chosen scenarios on one private cluster (a fresh database each)."""
    chosen = [a for a in argv if a in SCENARIOS] or list(SCENARIOS)
    seconds = _num("RELIABILITY_SECONDS", 120)
    report = Report()
    started = time.time()
    with Cluster() as cluster:
        busy = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"private PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port} "
            f"({cluster.data}); {os.cpu_count()} CPUs, load average {busy} at start",
            flush=True,
        )
        for key in chosen:
            try:
                if key == "a":
                    drops.run(
                        report,
                        cluster,
                        seconds,
                        int(_num("RELIABILITY_DEVICES", 20)),
                        _num("RELIABILITY_DROP_RATE", 0.2),
                    )
                elif key == "b":
                    kills.run(report, cluster, int(_num("RELIABILITY_KILLS", 10)))
                elif key == "c":
                    database.run(report, cluster, _num("RELIABILITY_OUTAGE_SECONDS", 5), 10)
                elif key == "d":
                    blobstore.run(report, cluster, _num("RELIABILITY_OUTAGE_SECONDS", 5))
                elif key == "e":
                    load.run(
                        report,
                        cluster,
                        _num("RELIABILITY_LOAD_SECONDS", max(10.0, seconds / 2)),
                        int(_num("RELIABILITY_LOAD_CLIENTS", 16)),
                    )
            except Exception as exc:  # one scenario's crash must not hide the others' figures
                traceback.print_exc()
                report.fail("scenario", repr(exc))
    print(f"\nreliability: {time.time() - started:.0f} s", flush=True)
    if report.failures:
        print(f"FAILED invariants: {', '.join(report.failures)}", flush=True)
        print(f"gunicorn logs and instance folders: {WORKDIR}", flush=True)
        return 1
    shutil.rmtree(WORKDIR, ignore_errors=True)
    print("all invariants held", flush=True)
    return 0
