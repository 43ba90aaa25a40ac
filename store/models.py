"""SQLAlchemy models: the organisation, templates, synced records and bookkeeping."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.types import UTCDateTime, new_id, utcnow

ID = String(64)


class Base(DeclarativeBase):
    """Declarative base with the shared type map."""

    type_annotation_map: ClassVar[dict] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Synced:
    """Columns every synced table carries: client ids, revs, per-column revs, tombstones."""

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    # Position in the global change stream; rows of one commit get consecutive revs.
    server_rev: Mapped[int] = mapped_column(BigInteger, index=True, default=0)
    # column -> [rev, device] of its last change after creation (see sync/revs.py); NULL until
    # the first update, so bulk inserts carry no JSON.
    col_revs: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Filled by the database, so a 3000-row insert does not convert 6000 datetimes in Python.
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)


# --- organisation -----------------------------------------------------------------------


class Region(Base):
    """A group of sites under one regional manager."""

    __tablename__ = "regions"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Site(Synced, Base):
    """A hotel, canteen or shop that inspectors visit."""

    __tablename__ = "sites"
    region_id: Mapped[str] = mapped_column(ForeignKey("regions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    address: Mapped[str | None] = mapped_column(String(500), default=None)


class User(Base):
    """A person who signs in: inspector, regional manager or HQ."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    region_id: Mapped[str | None] = mapped_column(ForeignKey("regions.id"), default=None)
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteAssignment(Base):
    """An inspector's access to a site; revoking keeps the row so pulls can send deletions."""

    __tablename__ = "site_assignments"
    __table_args__ = (UniqueConstraint("user_id", "site_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    server_rev: Mapped[int] = mapped_column(BigInteger, index=True, default=0)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RefreshToken(Base):
    """A single-use refresh token; reuse of a spent one revokes its whole family."""

    __tablename__ = "refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


# --- templates --------------------------------------------------------------------------


class Template(Base):
    """A checklist as HQ edits it: a draft plus a pointer to its latest published version."""

    __tablename__ = "template_drafts"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    template_key: Mapped[str] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    description_zh: Mapped[str | None] = mapped_column(Text, default=None)
    description_en: Mapped[str | None] = mapped_column(Text, default=None)
    pass_threshold: Mapped[float] = mapped_column(Float, default=80.0)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TemplateVersion(Synced, Base):
    """An immutable published version; the `templates` table of the sync wire."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("template_key", "version"),)
    draft_id: Mapped[str] = mapped_column(ForeignKey("template_drafts.id"), index=True)
    template_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    description_zh: Mapped[str | None] = mapped_column(Text, default=None)
    description_en: Mapped[str | None] = mapped_column(Text, default=None)
    pass_threshold: Mapped[float] = mapped_column(Float, default=80.0)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)


# --- schedules --------------------------------------------------------------------------


class Schedule(Base):
    """A recurring inspection duty: template + site + assignees + recurrence."""

    __tablename__ = "schedules"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    draft_id: Mapped[str] = mapped_column(ForeignKey("template_drafts.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    assignee_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recurrence: Mapped[dict[str, Any]] = mapped_column(JSON)
    timezone: Mapped[str] = mapped_column(String(64))
    window_minutes: Mapped[int] = mapped_column(Integer, default=60)
    grace_minutes: Mapped[int] = mapped_column(Integer, default=120)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    generated_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Occurrence(Synced, Base):
    """One due instance of a schedule for one assignee."""

    __tablename__ = "occurrences"
    __table_args__ = (UniqueConstraint("schedule_id", "assignee_id", "due_at"),)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"), index=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    window_start: Mapped[dt.datetime] = mapped_column()
    due_at: Mapped[dt.datetime] = mapped_column(index=True)
    miss_at: Mapped[dt.datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="upcoming")
    inspection_id: Mapped[str | None] = mapped_column(ID, default=None)


# --- inspections and their evidence -----------------------------------------------------


class Inspection(Synced, Base):
    """One run of a checklist at a site; device times are epoch milliseconds as sent."""

    __tablename__ = "inspections"
    template_id: Mapped[str] = mapped_column(ID, index=True)
    site_id: Mapped[str] = mapped_column(ID)
    occurrence_id: Mapped[str | None] = mapped_column(ID, default=None)
    area: Mapped[str | None] = mapped_column(String(200), default=None)
    mode: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    started_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    inspector_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    max_score: Mapped[float | None] = mapped_column(Float, default=None)
    score_percent: Mapped[float | None] = mapped_column(Float, default=None)
    grade: Mapped[str | None] = mapped_column(String(8), default=None)
    passed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    critical_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    media_complete: Mapped[bool] = mapped_column(Boolean, default=True)
    review_state: Mapped[str | None] = mapped_column(String(16), default=None)
    review_comment: Mapped[str | None] = mapped_column(Text, default=None)
    has_conflicts: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewed_by: Mapped[str | None] = mapped_column(ID, default=None)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    completed_received_at: Mapped[dt.datetime | None] = mapped_column(index=True, default=None)


class Response(Synced, Base):
    """The answer to one item; `value` is the JSON text exactly as the device sent it."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_inspection_item", "inspection_id", "item_key"),)
    inspection_id: Mapped[str] = mapped_column(ID)
    item_key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    answered_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    failed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    item_score: Mapped[float | None] = mapped_column(Float, default=None)
    # Denormalised from the inspection so scoped pulls need no join.
    site_id: Mapped[str | None] = mapped_column(ID, default=None)


class Attachment(Synced, Base):
    """A photo or signature record; its bytes live in the blob store under its sha256."""

    __tablename__ = "attachments"
    inspection_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    response_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    action_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    kind: Mapped[str] = mapped_column(String(16), default="photo")
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    mime: Mapped[str | None] = mapped_column(String(100), default=None)
    byte_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    captured_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    signer_name: Mapped[str | None] = mapped_column(String(200), default=None)
    signer_role: Mapped[str | None] = mapped_column(String(100), default=None)
    signed_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    signed_content_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    site_id: Mapped[str | None] = mapped_column(ID, default=None)
    # Evidence read from the original's EXIF: shown to reviewers, never put in derivatives.
    exif_captured_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    exif_latitude: Mapped[float | None] = mapped_column(Float, default=None)
    exif_longitude: Mapped[float | None] = mapped_column(Float, default=None)
    signature_stale: Mapped[bool] = mapped_column(Boolean, default=False)
    # Metadata that arrived with an upload before the record itself synced.
    pending_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    uploaded_by: Mapped[str | None] = mapped_column(ID, default=None)
    upload_requested_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Blob(Base):
    """Content-addressed bytes known to the store, shared by every attachment with that hash."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    mime: Mapped[str] = mapped_column(String(100))
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    has_derivatives: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Action(Synced, Base):
    """A corrective action (整改) raised on completion or by hand."""

    __tablename__ = "actions"
    inspection_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    response_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    site_id: Mapped[str] = mapped_column(ID)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    priority: Mapped[str] = mapped_column(String(16), default="medium")
    assignee_id: Mapped[str | None] = mapped_column(ID, default=None)
    due_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str | None] = mapped_column(ID, default=None)
    verified_by: Mapped[str | None] = mapped_column(ID, default=None)
    verified_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(String(16), default="manual")


# --- report rollups ---------------------------------------------------------------------


class DailyCounts:
    """The figures a rollup cell keeps, and the report buckets of its day."""

    # Stored because SQLite has no ISO week to group by.
    week: Mapped[str] = mapped_column(String(8))
    month: Mapped[str] = mapped_column(String(7))
    completed: Mapped[int] = mapped_column(Integer)
    passed: Mapped[int] = mapped_column(Integer)
    critical_failed: Mapped[int] = mapped_column(Integer)
    scored: Mapped[int] = mapped_column(Integer)
    # score_percent has one decimal: summing tenths as integers is exact and cannot drift
    # under the increments and decrements the cell receives.
    score_tenths: Mapped[int] = mapped_column(BigInteger)


class InspectionDaily(DailyCounts, Base):
    """Completed inspections summed per UTC day x site x template version x inspector."""

    # Kept by store/rollups.py in the transaction that changes an inspection, so compliance
    # reports read one row per cell instead of one per inspection.

    __tablename__ = "inspection_daily"
    # Day first: reports ask for a period, and the primary key then serves the range scan.
    __table_args__ = (
        PrimaryKeyConstraint("day", "site_id", "template_id", "inspector_id"),
        Index("ix_inspection_daily_site_day", "site_id", "day"),
    )
    day: Mapped[dt.date] = mapped_column(Date)
    site_id: Mapped[str] = mapped_column(ID)
    template_id: Mapped[str] = mapped_column(ID)
    # '' for an inspection without inspector: primary key columns cannot hold NULL.
    inspector_id: Mapped[str] = mapped_column(ID)


class RegionDaily(DailyCounts, Base):
    """inspection_daily summed per region (the site's current one): what HQ-wide reports read."""

    __tablename__ = "region_daily"
    __table_args__ = (PrimaryKeyConstraint("day", "region_id", "template_id", "inspector_id"),)
    day: Mapped[dt.date] = mapped_column(Date)
    region_id: Mapped[str] = mapped_column(ID)
    template_id: Mapped[str] = mapped_column(ID)
    inspector_id: Mapped[str] = mapped_column(ID)


# --- sync bookkeeping -------------------------------------------------------------------


class Conflict(Base):
    """A device change the server refused or overwrote, kept with both values for review."""

    __tablename__ = "conflicts"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    table_name: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(ID, index=True)
    inspection_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    site_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    column: Mapped[str | None] = mapped_column(String(64), default=None)
    server_value: Mapped[Any] = mapped_column(JSON, default=None)
    device_value: Mapped[Any] = mapped_column(JSON, default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    user_id: Mapped[str | None] = mapped_column(ID, default=None)
    device_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(ID, default=None)
    resolution: Mapped[str | None] = mapped_column(String(16), default=None)
    # Revved so a device learns (as a deletion) that a record it pushed out of scope is gone.
    server_rev: Mapped[int] = mapped_column(BigInteger, index=True, default=0)


class AuditEvent(Base):
    """Append-only trail of changes: who, when, which device, old -> new."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(ID, default=None)
    device_id: Mapped[str | None] = mapped_column(String(128), default=None)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(ID)
    inspection_id: Mapped[str | None] = mapped_column(ID, index=True, default=None)
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class SyncCounter(Base):
    """The deployment's single rev counter; its row lock orders commits."""

    __tablename__ = "sync_counter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    # Tombstones at or below this rev have been purged: older cursors get a full replacement.
    purged_rev: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(Base):
    """A stored push response, replayed for a retried request with the same key and body."""

    __tablename__ = "idempotency_records"
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class DeviceState(Base):
    """What the server last saw of a device: for support and stale-device diagnosis."""

    __tablename__ = "device_states"
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_pull_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_pulled_rev: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The cursor the device's latest pull started from: what it knew before that pull.
    pull_start_rev: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_push_at: Mapped[dt.datetime | None] = mapped_column(default=None)


# Scoped pulls filter by site and walk by rev: one composite index serves both.
for _model in (Occurrence, Inspection, Response, Attachment, Action):
    Index(f"ix_{_model.__tablename__}_site_rev", _model.site_id, _model.server_rev)
