"""The reports count the same inspections: failing items only of those compliance counts."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import HQ_EMAIL, NORTH

PERIOD = f"start={quote('2000-01-01T00:00:00Z')}&end={quote('2100-01-01T00:00:00Z')}"


def _counts(api, who=HQ_EMAIL):
    compliance = api.get(f"/reports/compliance?{PERIOD}", who).get_json()
    failing = api.get(f"/reports/failing-items?{PERIOD}", who).get_json()
    return sum(r["inspections_completed"] for r in compliance), failing


@pytest.mark.parametrize("who", [HQ_EMAIL, NORTH])
def test_failing_items_drop_an_inspection_returned_for_rework(api, completed, who):
    _, iid = completed
    done, failing = _counts(api, who)
    assert done == 1
    assert {(r["item_key"], r["failures"]) for r in failing} == {("clean", 1), ("fridge", 1)}
    resp = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Redo the fridge"})
    assert resp.status_code == 200, resp.get_json()
    done, failing = _counts(api, who)
    assert done == 0
    assert failing == []


def test_a_closed_sites_history_counts_alike_for_hq_and_its_regions_manager(api, completed, env):
    site = env["sites"]["N-HOTEL"]
    assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    path = f"/reports/compliance?{PERIOD}&group_by=region"
    hq = {r["region"]: r["inspections_completed"] for r in api.get(path, HQ_EMAIL).get_json()}
    manager = api.get(path, NORTH).get_json()
    assert [r["inspections_completed"] for r in manager] == [1]
    assert hq[manager[0]["region"]] == 1
