"""a. Devices sync for minutes through a proxy that loses a share of the responses; at the end
nothing is lost or doubled and every device holds what the server holds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from bench.reliability.client import Tally, login
from bench.reliability.fleet import Ledger, Phone, diverged, observer_snapshot, server_facts
from bench.reliability.proxy import DroppingProxy
from bench.reliability.report import Report
from bench.reliability.server import Gunicorn, app_env, prepare_database

ANA = "ana.inspector@demo.example"
BEN = "ben.inspector@demo.example"
NORTH = "north.manager@demo.example"
SOUTH = "south.manager@demo.example"
# Two inspectors sharing a hotel, each on several installs (phones, tablets), and the
# regional managers annotating the same inspections: 7 + 7 + 4 + 2 of every 20.
MIX = [(ANA, "inspector")] * 7 + [(BEN, "inspector")] * 7 + [(NORTH, "manager")] * 4
MIX += [(SOUTH, "manager")] * 2


def accounts(count: int) -> list[tuple[str, str]]:
    """`count` installs in the proportions of MIX."""
    return [MIX[(i * len(MIX)) // count] for i in range(count)]


def make_phones(
    port: int, server_port: int, count: int, tally: Tally, ledger: Ledger, cap: float = 5.0
) -> list[Phone]:
    """Signed-in installs (sign-in goes straight to the server: it is not under test here)."""
    tokens = {email: login(server_port, email) for email in {e for e, _ in MIX}}
    phones = []
    for n, (email, role) in enumerate(accounts(count)):
        token, user_id = tokens[email]
        name = f"{email.split('@')[0]}-{n:02d}"
        phones.append(
            Phone(
                name,
                email,
                role,
                user_id,
                token,
                port,
                tally,
                ledger,
                seed=1000 + n,
                retry_after_cap=cap,
            )
        )
    return phones


def settle_all(phones: list[Phone], rounds: int = 8) -> int:
    """Sync everyone until two quiet rounds in a row; returns the rounds used."""
    # Quiet twice: the last pusher's changes reach the devices that synced before it.
    quiet = 0
    for n in range(1, rounds + 1):
        busy = False
        for phone in phones:
            pushes = phone.device.pushes
            photos = phone.stats["photos"]
            phone.settle()
            phone.upload_pending()
            busy |= phone.device.pushes != pushes or phone.stats["photos"] != photos
            busy |= phone.device.dirty() or bool(phone.uploads)
        quiet = quiet + 1 if not busy else 0
        if quiet >= 2:
            return n
    return rounds


def converge_checks(
    report: Report, phones: list[Phone], server_port: int, url: str, ledger: Ledger, tally: Tally
) -> dict[str, Any]:
    """Lost, doubled, partial, converged: the invariants shared by scenarios a and c."""
    facts = server_facts(url, ledger)
    by_table = ", ".join(f"{t} {n}" for t, n in sorted(facts["created_by_table"].items()))
    report.figure("records_created", facts["created"], note=by_table)
    report.figure(
        "records_deleted_by_devices",
        facts["deleted"],
        note=f"{facts['tombstoned']} tombstoned on the server, the rest deleted before they synced",
    )
    report.check("deletes_lost", len(facts["undeleted"]), facts["undeleted"][:5])
    report.check("records_lost", len(facts["lost"]), facts["lost"][:5])
    if facts["kept_as_conflict"]:
        report.figure("records_kept_as_conflicts", facts["kept_as_conflict"])
    report.check(
        "records_duplicated",
        facts["dup_answers"] + facts["dup_actions"],
        f"answers {facts['dup_answers']}, auto actions {facts['dup_actions']}",
    )
    report.check("partial_pushes", len(facts["partial"]), facts["partial"][:5])
    report.check("unstamped_revs", facts["unstamped"])
    report.check("photos_not_uploaded", len(facts["not_uploaded"]), facts["not_uploaded"][:5])
    truths = {}
    for phone in phones:
        if phone.email not in truths:
            truths[phone.email] = observer_snapshot(
                server_port, phone.device.token, f"observer-{phone.email}", tally
            )
    bad = {p.name: diverged(p, truths[p.email]) for p in phones}
    bad = {k: v for k, v in bad.items() if v}
    report.figure(
        "devices_converged",
        f"{len(phones) - len(bad)}/{len(phones)}",
        ok=not bad,
        note="; ".join(f"{k}: {v[0]}" for k, v in list(bad.items())[:3]),
    )
    seen = set()
    for truth in truths.values():
        seen |= set(truth["inspections"])
    report.figure(
        "server_inspections_all_pulled",
        f"{len(seen)}/{facts['live']['inspections']}",
        ok=len(seen) == facts["live"]["inspections"],
    )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(facts["conflicts"].items())) or "none"
    report.figure("conflict_records", sum(facts["conflicts"].values()), note=kinds)
    # Devices answer every required item before completing: a refusal is a server fault.
    report.check("completions_refused_wrongly", facts["conflicts"].get("incomplete", 0))
    unexpected = [u for p in phones for u in p.unexpected]
    report.check("unexpected_answers", len(unexpected), unexpected[:3])
    report.check(
        "server_errors_5xx",
        sum(v for k, v in tally.counts.items() if k.startswith("5xx")),
        {k: v for k, v in tally.counts.items() if k.startswith("5xx")},
    )
    return facts


def run(report: Report, cluster: Any, seconds: float, devices: int, drop_rate: float) -> None:
    """Scenario a."""
    report.section(
        "a", f"{devices} devices, {seconds:.0f} s, proxy losing {drop_rate:.0%} of responses"
    )
    url = cluster.create_database("rel_drops")
    env = app_env(url)
    prepare_database(env)
    tally, ledger = Tally(), Ledger()
    with Gunicorn(env, workers=4, threads=4) as server:
        proxy = DroppingProxy(server.port, drop_rate).start()
        try:
            phones = make_phones(proxy.port, server.port, devices, tally, ledger)
            for phone in phones:
                phone.settle()
            stop = threading.Event()
            deadline = time.time() + seconds
            threads = [
                threading.Thread(target=p.run_until, args=(deadline, (0.2, 1.0), stop))
                for p in phones
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            dropped_during_run = proxy.total_dropped
            # Everyone syncs to the end through the same lossy link.
            rounds = settle_all(phones)
            stats = sum((p.stats for p in phones), Counter())
            total = sum(proxy.forwarded.values()) + proxy.total_dropped
            report.figure(
                "devices",
                len(phones),
                note=", ".join(
                    f"{e.split('@')[0]} {n}" for e, n in Counter(p.email for p in phones).items()
                ),
            )
            report.figure("requests_through_proxy", total)
            top = ", ".join(f"{k} {v}" for k, v in proxy.dropped.most_common(5))
            report.figure(
                "responses_dropped",
                proxy.total_dropped,
                note=f"{proxy.total_dropped / max(total, 1):.1%}; {top}",
            )
            report.figure(
                "responses_dropped_in_final_sync", proxy.total_dropped - dropped_during_run
            )
            applied = proxy.dropped_status["POST /sync/push", "200"]
            report.figure(
                "push_answers_lost_after_apply",
                applied,
                note="each retried with the same body and Idempotency-Key: a replay",
            )
            retries = sum(v for k, v in tally.counts.items() if k.startswith("retry"))
            report.figure("requests_retried", retries)
            report.figure("syncs_completed", stats["syncs"])
            report.figure(
                "syncs_given_up_then_redone",
                stats["sync_failed"],
                note="six lost responses in a row; the next sync redid it",
            )
            report.figure("stale_push_409", stats["stale_409"], note="protocol: pull, push again")
            report.figure("pushes_answered", sum(p.device.pushes for p in phones))
            report.figure(
                "device_actions",
                stats["created"] + stats["edits"] + stats["completed"] + stats["deleted"],
                note=f"created {stats['created']}, edits {stats['edits']}, completed "
                f"{stats['completed']}, deleted {stats['deleted']}",
            )
            report.figure("photos_uploaded", stats["photos"])
            report.figure("final_sync_rounds", rounds)
            report.check("device_crashes", stats["crashed"])
            report.check(
                "server_unavailable_503",
                sum(v for k, v in tally.counts.items() if k.startswith("503")),
            )
            converge_checks(report, phones, server.port, url, ledger, tally)
            errors = server.log_errors()
            report.check("server_log_errors", len(errors), errors[:2])
        finally:
            proxy.stop()
