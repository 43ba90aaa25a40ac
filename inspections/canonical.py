"""The canonical content a signature binds to.

Form: UTF-8 JSON with sorted keys and no whitespace (separators "," and ":"), non-ASCII kept
as is, of {"area", "responses", "site_id", "template_id"} where responses is the list of live
responses sorted by item_key then id, each {"item_key", "note", "value"} with `value` the JSON
text exactly as synced. Server-owned columns and times are excluded, so the hash changes only
when what was answered changes. A device computes sha256 over these bytes (hex, lower case).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_content(inspection: dict[str, Any], responses: list[dict[str, Any]]) -> bytes:
    """The bytes a signature's signed_content_sha256 is computed over."""
    live = [r for r in responses if r.get("deleted_at") is None]
    doc = {
        "template_id": inspection.get("template_id"),
        "site_id": inspection.get("site_id"),
        "area": inspection.get("area"),
        "responses": [
            {"item_key": r["item_key"], "value": r.get("value"), "note": r.get("note")}
            for r in sorted(live, key=lambda r: (r["item_key"], r["id"]))
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_sha256(inspection: dict[str, Any], responses: list[dict[str, Any]]) -> str:
    """Hex sha256 of the canonical content."""
    return hashlib.sha256(canonical_content(inspection, responses)).hexdigest()
