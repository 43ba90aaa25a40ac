"""Missing evidence: required photos and signatures that have not arrived yet."""

from __future__ import annotations

from typing import Any

from inspections.template_rules import iter_items


def missing_evidence(
    body: dict[str, Any], result: Any, evidence: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """Items whose photo rule or required photo/signature is not met by uploaded bytes.

    `evidence` maps item_key -> {"records": attachment records, "uploaded": with bytes}.
    """
    missing = []
    for _section, item in iter_items(body):
        rule = item.get("photo")
        if rule is None and item["type"] not in ("photo", "signature"):
            continue  # needs no evidence whatever its outcome (most items: checked first)
        key = item["key"]
        outcome = result.items.get(key)
        if outcome is None or not outcome.applicable:
            continue  # hidden by visible_if, or answered na
        needed = (
            (item["type"] in ("photo", "signature") and item.get("required", True))
            or rule == "always"
            or (rule == "on_fail" and outcome.failed)
        )
        if not needed:
            continue
        slot = evidence.get(key, {"records": 0, "uploaded": 0})
        if slot["uploaded"] > 0:
            continue
        missing.append(
            {
                "item_key": key,
                "kind": "signature" if item["type"] == "signature" else "photo",
                "state": "not_uploaded" if slot["records"] else "no_record",
                "label": item.get("label"),
            }
        )
    return missing
