"""Evidence: which attachments answer an item, and the required photos and signatures that
have not arrived yet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from inspections.template_rules import iter_items


def evidences(item_type: str | None, attachment: Mapping[str, Any]) -> bool:
    """Whether an attachment on an item's response is the evidence the item asks for."""
    if item_type == "signature":
        # A signature binds to the content it signed (domain.md): one that names none could
        # be put under any answers, so it signs nothing and answers nothing.
        return attachment.get("kind") == "signature" and bool(
            attachment.get("signed_content_sha256")
        )
    # A photo item, or a photo rule: a signature is no picture of the room or the fault.
    return attachment.get("kind") == "photo"


def tally(
    items: Mapping[str, Mapping[str, Any]],
    by_response: Mapping[str | None, str],
    attachments: Iterable[Mapping[str, Any]],
) -> dict[str, dict[str, int]]:
    """Per item key, the live attachments evidencing it: {"records": n, "uploaded": with bytes}.

    `items` maps item_key -> item, `by_response` the responses scored -> their item_key; the
    counts decide a photo or signature item's answer (scoring) and missing_evidence."""
    evidence: dict[str, dict[str, int]] = {}
    for att in attachments:
        key = by_response.get(att.get("response_id"))
        if key is None:
            continue
        item = items.get(key)
        if not evidences(item and item["type"], att):
            continue
        slot = evidence.setdefault(key, {"records": 0, "uploaded": 0})
        slot["records"] += 1
        slot["uploaded"] += 1 if att.get("uploaded") else 0
    return evidence


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
