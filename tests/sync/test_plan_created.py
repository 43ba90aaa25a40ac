"""Created records planned all at once (a big push's path) become exactly the rows, in the same
key order, that planning them one by one makes; a missing required column names the record."""

from __future__ import annotations

import random
from typing import Any

import pytest

from store.changeset import ChangeSet
from store.errors import Invalid
from sync.push import ORDER, _Push
from sync.scope import Scope

USER = "inspector-1"


def _plan() -> _Push:
    scope = Scope(user_id=USER, role="inspector", region_id=None, site_ids=frozenset({"s1"}))
    cs = ChangeSet(user_id=USER, role="inspector", device_id="phone", now_ms=0)
    # Planning new records reads only the plan itself, never the database.
    return _Push(None, scope, cs)  # type: ignore[arg-type]


def _records(seed: int) -> dict[str, list[dict[str, Any]]]:
    """New records of every pushable table, with the spellings devices use: missing optional
    columns, '' for a null id, whole numbers written as 5.0."""
    rnd = random.Random(seed)
    inspections = [
        {
            "id": f"insp{n:03d}",
            "template_id": "t1",
            "site_id": "s1",
            **({"status": "in_progress"} if n % 3 else {}),
            **({"started_at": float(1_700_000_000_000 + n)} if n % 4 == 0 else {}),
            **({"area": f"Room {n}"} if n % 2 else {}),
            "occurrence_id": "" if n % 5 == 0 else None,
        }
        for n in range(60)
    ]
    responses = [
        {
            "id": f"resp{n:04d}",
            "inspection_id": rnd.choice(inspections)["id"],
            "item_key": f"i{n % 7}",
            "value": rnd.choice(['"yes"', '"no"', "4", None]),
            **({"note": "dusty"} if n % 6 == 0 else {}),
            "answered_at": rnd.choice([1_700_000_000_000, 1.7e12, None]),
        }
        for n in range(300)
    ]
    actions = [
        {
            "id": f"act{n:03d}",
            "inspection_id": rnd.choice(inspections)["id"] if n % 3 else "",
            "site_id": "s1",
            **({"title": "Fix the seal"} if n % 2 else {}),
            **({"priority": "high"} if n % 4 == 0 else {}),
        }
        for n in range(55)
    ]
    # A photo names an answer of its own inspection (or none).
    answered = [rnd.choice(responses) if n % 2 else None for n in range(70)]
    attachments = [
        {
            "id": f"att{n:03d}",
            "inspection_id": resp["inspection_id"] if resp else rnd.choice(inspections)["id"],
            "response_id": resp["id"] if resp else "",
            **({"kind": "signature"} if n % 5 == 0 else {}),
            "byte_size": 1024.0 if n % 3 == 0 else 2048,
        }
        for n, resp in enumerate(answered)
    ]
    return {
        "inspections": inspections,
        "responses": responses,
        "actions": actions,
        "attachments": attachments,
    }


def _state(plan: _Push) -> tuple:
    cs = plan.cs
    after = {
        name: [(rid, list(row.items())) for rid, row in rows.items()]
        for name, rows in cs.after.items()
    }
    return after, cs.before, cs.device_changed, cs.conflicts


@pytest.mark.parametrize("seed", range(5))
def test_created_records_planned_at_once_are_the_rows_planned_one_by_one(seed):
    records = _records(seed)
    bulk, single = _plan(), _plan()
    for name in ORDER:
        bulk.create_all(name, records[name])
        for rec in records[name]:
            site, refusal = single.new_place(name, rec)
            assert refusal is None, (name, rec["id"], refusal)
            single.create(name, rec, site, None)
    assert _state(bulk) == _state(single)
    assert bulk.cs.conflicts == []
    assert len(bulk.cs.after["responses"]) == 300
    row = bulk.cs.after["inspections"]["insp000"]
    assert row["status"] == "draft" and row["inspector_id"] == USER
    assert row["started_at"] == 1_700_000_000_000 and type(row["started_at"]) is int
    assert row["occurrence_id"] is None
    action = bulk.cs.after["actions"]["act000"]
    assert (action["title"], action["priority"], action["status"]) == ("(untitled)", "high", "open")
    assert action["inspection_id"] is None and action["site_id"] == "s1"
    # Children take their site from their inspection; photos are photos unless they say.
    assert {r["site_id"] for r in bulk.cs.after["responses"].values()} == {"s1"}
    assert bulk.cs.after["attachments"]["att001"]["kind"] == "photo"
    assert bulk.cs.after["attachments"]["att000"]["kind"] == "signature"
    assert bulk.cs.after["attachments"]["att000"]["byte_size"] == 1024


def test_a_created_record_missing_a_required_column_is_named():
    plan = _plan()
    records = _records(0)
    plan.create_all("inspections", records["inspections"])
    responses = records["responses"][:50]
    del responses[17]["item_key"]
    responses[31]["inspection_id"] = ""
    with pytest.raises(Invalid) as refused:
        plan.new_rows("responses", responses, ["s1"] * len(responses))
    assert str(refused.value) == (
        "The push was refused, nothing applied: responses.resp0017.item_key: is required."
    )
    assert refused.value.errors == {"responses.resp0017.item_key": ["is required"]}
    with pytest.raises(Invalid) as alone:
        plan.new_row("responses", responses[31], "s1")
    assert alone.value.errors == {"responses.resp0031.inspection_id": ["is required"]}
