"""Odd pull parameters get a 200 or a 4xx envelope, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ANA

# WatermelonDB's `migration` is {from, tables, columns: [{table, columns}]}; these are not.
ODD_MIGRATIONS = [
    '{"tables": [["sites"]]}',
    '{"tables": [{}]}',
    '{"columns": [{"table": ["sites"]}]}',
    '{"columns": [{"table": {"a": 1}}]}',
    '{"from": 1, "tables": ["nope"], "columns": [1, "x"]}',
]


@pytest.mark.parametrize("raw", ODD_MIGRATIONS)
def test_an_odd_migration_is_not_a_server_error(env, api, raw):
    headers = {"X-Device-Id": "odd"}
    by_get = api.get(
        "/sync/pull", ANA, headers=headers, query_string={"migration": raw, "last_pulled_at": 1}
    )
    by_post = api.post(
        "/sync/pull", ANA, headers=headers, json={"migration": json.loads(raw), "last_pulled_at": 1}
    )
    for resp in (by_get, by_post):
        assert resp.status_code == 200 or 400 <= resp.status_code < 500, resp.get_data()[:300]
        assert "changes" in resp.get_json() or "message" in resp.get_json()
