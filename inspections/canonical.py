"""The canonical content a signature binds to.

This is what a device must compute, byte for byte, for a signature's `signed_content_sha256`:
the lower-case hex sha256 of the UTF-8 bytes of

    json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

(in JavaScript: the same object with keys in sorted order, `JSON.stringify` without spacing),
where `doc` is

    {"area": <inspection.area>, "responses": [<entry>...],
     "site_id": <inspection.site_id>, "template_id": <inspection.template_id>}

`responses` holds one entry per *answered* live response of the inspection (deleted_at null),
sorted by item_key, then by response id. A response is answered when its `value` is not null,
its `note` is not null, or it has at least one photo: a live attachment (deleted_at null) with
`response_id` equal to the response's id and `kind` "photo". A response
with none of these (e.g. a signature item's own response) is left out, so a co-signer adding
their response does not change the content, while clearing an earlier answer does.

Each entry is {"item_key", "note", "value"}, plus "photos" only when the response has photos:

    {"item_key": str, "note": str | null, "photos": [attachment id, ...], "value": str | null}

`value` is the JSON text exactly as synced (a string, not parsed); `photos` is the sorted list of
those photos' attachment ids. An id is known from the moment the photo is taken, before its
bytes are hashed or uploaded, and the bytes behind it are checked against its sha256 on upload
and fixed from then on (sync/tables.py UPLOADED_CONTENT): so replacing a photo (a new record)
changes the content, while its upload does not. Signature attachments are never content; nor are
server-owned columns, times, or any other attachment metadata. So the hash changes only when what
was answered changes: a value, a note, or the photos that answer an item.

Signatures made by earlier releases used the legacy form (`legacy_content_sha256`: every live
response's item_key, note and value, no photos); they stay valid while that content holds.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any


def _photos(attachments: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """response id -> sorted ids of its live photo attachments."""
    photos: dict[str, list[str]] = defaultdict(list)
    for a in attachments:
        if (
            a.get("kind") == "photo"
            and a.get("deleted_at") is None
            and a.get("response_id") is not None
        ):
            photos[a["response_id"]].append(a["id"])
    return {rid: sorted(ids) for rid, ids in photos.items()}


def _entry(response: dict[str, Any], photos: list[str]) -> dict[str, Any]:
    entry = {
        "item_key": response["item_key"],
        "note": response.get("note"),
        "value": response.get("value"),
    }
    if photos:
        entry["photos"] = photos
    return entry


def canonical_content(
    inspection: dict[str, Any],
    responses: Iterable[dict[str, Any]],
    attachments: Iterable[dict[str, Any]] = (),
) -> bytes:
    """The bytes a signature's signed_content_sha256 is computed over (see the module doc).

    `attachments` are the inspection's attachments (any kind, live or not); only live photos
    pointing at a live response count.
    """
    photos = _photos(attachments)
    entries = []
    for r in sorted(
        (r for r in responses if r.get("deleted_at") is None),
        key=lambda r: (r["item_key"], r["id"]),
    ):
        own = photos.get(r["id"], [])
        if r.get("value") is None and r.get("note") is None and not own:
            continue  # carries no answer: not content
        entries.append(_entry(r, own))
    doc = {
        "template_id": inspection.get("template_id"),
        "site_id": inspection.get("site_id"),
        "area": inspection.get("area"),
        "responses": entries,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_sha256(
    inspection: dict[str, Any],
    responses: Iterable[dict[str, Any]],
    attachments: Iterable[dict[str, Any]] = (),
) -> str:
    """Hex sha256 of the canonical content."""
    return hashlib.sha256(canonical_content(inspection, responses, attachments)).hexdigest()


def legacy_content_sha256(inspection: dict[str, Any], responses: Iterable[dict[str, Any]]) -> str:
    """Hex sha256 of the form signatures were made with before photos were content: every live
    response (sorted by item_key, then id) as {"item_key", "note", "value"}."""
    live = sorted(
        (r for r in responses if r.get("deleted_at") is None),
        key=lambda r: (r["item_key"], r["id"]),
    )
    doc = {
        "template_id": inspection.get("template_id"),
        "site_id": inspection.get("site_id"),
        "area": inspection.get("area"),
        "responses": [
            {"item_key": r["item_key"], "value": r.get("value"), "note": r.get("note")}
            for r in live
        ],
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest()
