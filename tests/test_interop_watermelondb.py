"""The stock WatermelonDB client (pinned in tests/interop/package-lock.json, LokiJS adapter,
headless Node) syncs with the real server over HTTP; see tests/interop/scenarios.js."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ANA, HQ_EMAIL

INTEROP = Path(__file__).resolve().parent / "interop"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "@nozbe" / "watermelondb").exists():
        if os.environ.get("CI"):
            pytest.fail(
                "CI must run the WatermelonDB interop suite: install node and run "
                "`npm ci --prefix tests/interop`"
            )
        pytest.skip("node or tests/interop/node_modules missing (run `make install-dev`)")
    return node


def test_watermelondb_client_scenarios(live_server, env, api):
    node = _node()
    env_vars = {
        **os.environ,
        "BASE_URL": live_server,
        "ANA_TOKEN": api.login(ANA)["access_token"],
        "ANA_ID": env["users"][ANA],
        "HQ_TOKEN": api.login(HQ_EMAIL)["access_token"],
        "TEMPLATE_ID": env["template"],
        "SITE_ID": env["sites"]["N-HOTEL"],
        "OTHER_SITE_ID": env["sites"]["S-HOTEL"],
    }
    proc = subprocess.run(
        [node, "scenarios.js"],
        cwd=INTEROP,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
    results = json.loads(line.removeprefix("RESULTS "))
    assert set(results) == {
        "twoDevicesSync",
        "perFieldMerge",
        "stalePushRetries",
        "completedStaysCompleted",
        "deletesDoNotResurrect",
        "lostResponseRetryCreatesNoDuplicates",
        "manyPagesConverge",
        "revokedSiteKeepsOfflineEdits",
        "grantedSiteArrivesInPages",
    }
    assert all(v == "ok" for v in results.values()), results
