"""Every id, key and code rule matches the whole value: Python's `$` also matches before a
final newline, so "abc\\n" would pass a `^...$` check and reach storage keys and the database."""

from __future__ import annotations

import marshmallow as ma
import pytest

from inspections import schedules, template_rules
from media import storage, uploads
from schemas.common import Id
from schemas.org import CODE
from schemas.templates import KEY
from sync import validate

RULES = {
    "push record id": (validate._ID, "ab12"),
    "attachment id": (uploads.ATTACHMENT_ID, "ab12"),
    "sha256": (uploads.SHA256, "a" * 64),
    "storage key": (storage._KEY, "blobs/ab/cd"),
    "template item key": (template_rules.KEY_RE, "clean_floor"),
    "template key": (template_rules.TEMPLATE_KEY_RE, "room_check"),
    "schedule time": (schedules._TIME, "09:30"),
}


@pytest.mark.parametrize("name", RULES)
def test_compiled_rules_refuse_a_trailing_newline(name):
    regex, good = RULES[name]
    assert regex.match(good)
    assert not regex.match(good + "\n")


@pytest.mark.parametrize(
    ("validator", "good"),
    [(Id().validators[0], "ab12"), (CODE, "N-1"), (KEY, "room_check")],
)
def test_schema_patterns_refuse_a_trailing_newline(validator, good):
    assert validator(good) == good
    with pytest.raises(ma.ValidationError):
        validator(good + "\n")


def test_push_refuses_ids_with_a_trailing_newline():
    assert validate._is_id("ab12") and not validate._is_id("ab12\n")


def test_openapi_patterns_stay_portable(api, demo_org):
    # The document's patterns are ECMA-262: no Python-only anchors such as \\Z.
    text = api.client.get("/api/v1/openapi.json").get_data(as_text=True)
    assert '"pattern"' in text and "\\\\Z" not in text
