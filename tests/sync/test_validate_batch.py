"""The column-at-a-time check of created records agrees with the per-record walk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import Invalid
from sync import validate
from sync.tables import PUSHABLE

# Values of every JSON type, with the awkward ones a column check must not let through.
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0, 1, 1.0, 1.5, -1, 90, 90.5, -180, float("nan"), 253_402_300_799_999]),
    st.sampled_from(
        ["", "yes", "abc123", "a-b_c.d", "bad id", "x" * 65, "x" * 201, "photo", "é", "open"]
    ),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


# A record every table takes: its required columns, named by a valid id.
_BASE = {"id": "rec0001", "template_id": "t1", "site_id": "s1", "inspection_id": "i1"}
_BASE_KEY = {"item_key": "i001"}


def _records(table: str) -> st.SearchStrategy[list]:
    keys = [*PUSHABLE[table].columns, "id", "_status", "_changed", "base_rev", "server_rev", "junk"]
    base = {k: v for k, v in {**_BASE, **_BASE_KEY}.items() if k in PUSHABLE[table].columns}
    # Mostly valid records with a value or two changed, so that one bad value decides.
    record = st.builds(
        lambda rid, over: {**base, "id": rid, **over},
        st.text(alphabet="abcXYZ019-_", min_size=1, max_size=8),
        st.dictionaries(st.sampled_from(keys), _VALUES, max_size=2),
    )
    return st.lists(st.one_of(record, st.integers()), min_size=1, max_size=6)


def _walk_errors(table: str, records: list) -> dict:
    errors: dict[str, list[str]] = {}
    for rec in records:
        validate._check_record(PUSHABLE[table], rec, errors, created=True)
    return errors


@settings(max_examples=600, deadline=None)
@given(data=st.data(), table=st.sampled_from(sorted(PUSHABLE)))
def test_a_batch_passes_only_when_every_record_passes_the_walk(data, table):
    records = data.draw(_records(table))
    if validate._all_fit(PUSHABLE[table], records):
        assert _walk_errors(table, records) == {}
        ids = [r["id"] for r in records]
        assert len(set(ids)) == len(ids)


def _created(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i:015d}",
            "inspection_id": f"i{i // 60:015d}",
            "item_key": f"i{i % 60:03d}",
            "value": '"yes"',
            "note": None,
            "answered_at": 1_700_000_000_000,
            "_status": "created",
            "_changed": "",
        }
        for i in range(n)
    ]


def test_a_big_valid_batch_takes_the_column_check():
    records = _created(3000)
    assert validate._all_fit(PUSHABLE["responses"], records)
    assert _walk_errors("responses", records) == {}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"answered_at": -5}, "responses.r000000000002999.answered_at"),
        ({"item_key": ""}, "responses.r000000000002999.item_key"),
        ({"inspection_id": "no spaces"}, "responses.r000000000002999.inspection_id"),
        ({"inspection_id": "i1\ni2"}, "responses.r000000000002999.inspection_id"),
        ({"value": 7}, "responses.r000000000002999.value"),
        ({"colour": "red"}, "responses.r000000000002999.colour"),
    ],
)
def test_one_bad_value_in_a_big_batch_is_named(change, key):
    records = _created(3000)
    records[-1].update(change)
    body = {"changes": {"responses": {"created": records}}, "last_pulled_at": 1}
    with pytest.raises(Invalid) as exc:
        validate.validate_push(body, 10_000)
    assert list(exc.value.errors) == [key]


@pytest.mark.parametrize(
    ("ids", "valid"),
    [
        ([], True),
        (["a"], True),
        (["a", "b-c_d.e", "x" * 64], True),
        ([""], False),
        (["x" * 65], False),
        (["a b"], False),
        (["é"], False),
        (["a\nb"], False),  # two valid ids, joined
        (["a", "b\n"], False),
        (["\n"], False),
    ],
)
def test_ids_checked_together_are_judged_as_one_by_one(ids, valid):
    assert validate._all_ids(ids) is valid
    assert all(validate._ID.match(v) for v in ids) is valid


def test_the_same_id_twice_in_one_table_is_refused_but_not_across_tables():
    records = _created(2)
    records[1]["id"] = records[0]["id"]
    body = {"changes": {"responses": {"created": records}}, "last_pulled_at": 1}
    with pytest.raises(Invalid) as exc:
        validate.validate_push(body, 10_000)
    assert list(exc.value.errors) == [f"responses.{records[0]['id']}"]
    inspection = {"id": records[0]["id"], "template_id": "t1", "site_id": "s1"}
    body = {
        "changes": {
            "inspections": {"created": [inspection]},
            "responses": {"created": records[:1]},
        },
        "last_pulled_at": 1,
    }
    changes, _last = validate.validate_push(body, 10_000)
    assert len(changes["responses"]["created"]) == 1
