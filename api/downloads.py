"""Downloads shared by the REST API and the console: evidence files, the PDF report, charts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, current_app, redirect, request
from sqlalchemy import select

from api import db
from api.documents import compliance_chart, inspection_pdf
from api.media import blob_store
from inspections import reports, review
from media import uploads
from store.errors import NotFound
from store.models import Attachment, Blob, Region, Site, User
from sync.scope import Scope


def variant_response(att: Attachment, variant: str) -> Response:
    """A variant's bytes with an ETag (local store) or a redirect to a presigned URL (S3)."""
    # The type comes from the blob the server verified, never from the (device-edited) record.
    blob = db.session().get(Blob, att.sha256) if att.sha256 else None
    key, mime = uploads.variant_key(att, variant, blob)
    store = blob_store()
    url = uploads.guarded(store.presign_get, key, current_app.config["PRESIGN_SECONDS"], mime)
    if url:
        return redirect(url, code=302)
    etag = f"{att.sha256}-{variant}"
    if request.if_none_match and etag in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    data = uploads.guarded(store.get, key)
    return Response(
        data,
        mimetype=mime,
        headers={
            "ETag": f'"{etag}"',
            "Cache-Control": "private, max-age=86400, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def inspection_report(scope: Scope, inspection_id: str) -> Response:
    """The inspection report as an inline PDF, with photo and signature thumbnails."""
    view = review.detail(db.session(), scope, inspection_id)
    images = {}
    wanted = [a for item in view["items"] for a in item["evidence"]] + view["signatures"]
    session = db.session()
    for att in wanted:
        if att.uploaded:
            try:
                key, _mime = uploads.variant_key(att, "thumb", session.get(Blob, att.sha256))
                images[att.id] = uploads.guarded(blob_store().get, key)
            except NotFound:
                continue  # the report goes out without a thumbnail the store lacks
    return Response(
        inspection_pdf(view, images),
        mimetype="application/pdf",
        headers={"Content-Disposition": f"inline; filename=inspection-{inspection_id}.pdf"},
    )


def compliance_chart_response(
    scope: Scope,
    start: dt.datetime,
    end: dt.datetime,
    group_by: list[str],
    filters: dict[str, Any],
    fmt: str,
    now: dt.datetime,
) -> Response:
    """Pass rate and average score over time per group, as PNG or SVG."""
    group_by = group_by or ["week"]
    session = db.session()
    rows = reports.compliance(session, scope, start, end, group_by, filters, now)
    data = compliance_chart(rows, group_by, fmt, display_names())
    return Response(data, mimetype="image/png" if fmt == "png" else "image/svg+xml")


def display_names() -> dict[str, str]:
    """Id -> name of sites, regions and users, for labels."""
    session = db.session()
    return {
        i: n
        for model in (Site, Region, User)
        for i, n in session.execute(select(model.id, model.name))
    }
