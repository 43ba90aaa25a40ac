"""Composition of the media package with the app: the blob store, limits, recompute."""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app
from sqlalchemy.orm import Session

from api.rules import sync_rules
from media.storage import BlobStore, make_store
from media.uploads import Limits
from store.changeset import ChangeSet
from store.models import Attachment
from store.types import utcnow
from sync import writer
from sync.tables import TABLES


def init_app(app: Flask) -> None:
    """Create the app's blob store (no network at startup)."""
    app.extensions["blob_store"] = make_store(app.config)


def blob_store() -> BlobStore:
    """The app's blob store."""
    return current_app.extensions["blob_store"]


def limits() -> Limits:
    """Upload limits from the configuration."""
    cfg = current_app.config
    return Limits(
        max_bytes=cfg["MAX_UPLOAD_BYTES"],
        max_pixels=cfg["MAX_IMAGE_PIXELS"],
        expiry=dt.timedelta(seconds=cfg["UPLOAD_EXPIRY_SECONDS"]),
        presign_seconds=cfg["PRESIGN_SECONDS"],
    )


def recompute_inspection(session: Session, attachment_id: str) -> None:
    """After bytes arrive: recompute the inspection's media_complete and bump the
    attachment's rev so every device learns it is uploaded."""
    session.flush()
    att = session.get(Attachment, attachment_id)
    if att is None or att.pending_upload:
        return
    cs = ChangeSet(
        user_id="system", role="hq", device_id=None, now_ms=int(utcnow().timestamp() * 1000)
    )
    rows = writer.load_rows(session, TABLES["attachments"].table, "id", [attachment_id])
    if rows:
        cs.add_context("attachments", rows[0])
        cs.bump("attachments", attachment_id)
    if att.inspection_id:
        for row in writer.load_rows(
            session, TABLES["inspections"].table, "id", [att.inspection_id]
        ):
            cs.add_context("inspections", row)
            cs.recompute.add(row["id"])
    sync_rules().apply(session, cs)
    writer.write(session, cs)
