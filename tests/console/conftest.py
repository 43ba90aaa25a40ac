"""Console fixtures: inspections synced from phones (with a photo), and a headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ANA, BEN
from tests.media.conftest import jpeg
from tests.media.test_upload_flow import _upload
from tests.sync_env import answer, new_inspection, photo_record

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def synced(env, device, client) -> dict[str, Any]:
    """Ana's phone completes a north inspection with a failed item and its photo; Ben's
    completes one in the south region."""
    phone = device(ANA, "ana-phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "no", note="Grease under the sink")
    answer(phone, iid, "fridge", 9)
    data = jpeg(1200, 900)
    att = photo_record(phone, iid, rid, data)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    phone.sync()
    assert _upload(client, phone, att, data).status_code == 200
    phone.sync()

    ben = device(BEN, "ben-phone")
    ben.sync()
    south = new_inspection(ben, env, site="S-HOTEL")
    south_rid = answer(ben, south, "clean", "no")
    answer(ben, south, "fridge", 3)
    south_data = jpeg(640, 480)
    south_att = photo_record(ben, south, south_rid, south_data)
    ben.update("inspections", south, status="completed", completed_at=1_795_000_000_000)
    ben.sync()
    assert _upload(client, ben, south_att, south_data).status_code == 200
    return {
        "phone": phone,
        "iid": iid,
        "att": att,
        "south": south,
        "south_att": south_att,
    }


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def chromium_path() -> str | None:
    """Debian's Chromium (apt-get install chromium), or CHROMIUM_PATH."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (no browser download: the system one)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: apt-get install chromium")
        pytest.skip("no Chromium here: apt-get install chromium (or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (ignored by git; CI may keep them)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
