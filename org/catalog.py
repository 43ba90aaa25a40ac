"""The template catalogue: HQ drafts, immutable published versions, the shipped library."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspections import schedule_service
from inspections.template_rules import TemplateInvalid, validate_template
from org.paging import page_of
from store.enums import HQ
from store.errors import Conflict, Invalid, NotFound
from store.models import AuditEvent, Template, TemplateVersion
from sync.scope import Scope

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "library" / "templates"


def to_document(t: Template | TemplateVersion) -> dict[str, Any]:
    """The template as the format document describes it (for validation and export)."""
    doc: dict[str, Any] = {
        "template_key": t.template_key,
        "category": t.category,
        "title": {"zh": t.title_zh, "en": t.title_en},
        "pass_threshold": t.pass_threshold,
        "body": t.body,
    }
    if t.description_zh or t.description_en:
        doc["description"] = {"zh": t.description_zh or "", "en": t.description_en or ""}
    return doc


def _apply(t: Template, data: dict[str, Any]) -> None:
    if "category" in data:
        t.category = data["category"]
    if "title" in data:
        t.title_zh, t.title_en = data["title"]["zh"], data["title"]["en"]
    if "description" in data:
        desc = data["description"] or {}
        t.description_zh, t.description_en = desc.get("zh"), desc.get("en")
    if "pass_threshold" in data:
        t.pass_threshold = data["pass_threshold"]
    if "body" in data:
        t.body = data["body"]


def _check(doc: dict[str, Any]) -> None:
    try:
        validate_template(doc)
    except TemplateInvalid as exc:
        first = next(iter(exc.errors.items()), ("template", ["invalid"]))
        raise Invalid(
            f"The template is not valid: {first[0]}: {first[1][0]}",
            errors=exc.errors,
            reason="invalid_template",
        ) from None


def list_templates(
    db: Session, scope: Scope, page: int, page_size: int, include_drafts: bool = False
) -> tuple[list, int]:
    """Templates by key; only published ones unless HQ asks for drafts too."""
    stmt = select(Template).where(Template.archived.is_(False))
    if not (scope.role == HQ and include_drafts):
        stmt = stmt.where(Template.latest_version > 0)
    items, total = page_of(db, stmt.order_by(Template.template_key), page, page_size)
    return (items if scope.role == HQ else _as_published(db, items)), total


def get_template(db: Session, scope: Scope, template_id: str) -> Any:
    """One template; unpublished drafts are HQ's only."""
    t = db.get(Template, template_id)
    if t is None or (scope.role != HQ and (t.latest_version == 0 or t.archived)):
        raise NotFound("No template with that id.")
    return t if scope.role == HQ else _as_published(db, [t])[0]


# What a template shows of its content; HQ sees the draft's, everyone else the published.
_CONTENT = (
    "category",
    "title_zh",
    "title_en",
    "description_zh",
    "description_en",
    "pass_threshold",
    "body",
)


def _as_published(db: Session, templates: list[Template]) -> list[Any]:
    """The templates as their latest published versions say, not as HQ's draft now reads
    (unpublished edits are HQ's until published)."""
    versions = {
        (v.draft_id, v.version): v
        for v in db.execute(
            select(TemplateVersion).where(TemplateVersion.draft_id.in_([t.id for t in templates]))
        ).scalars()
    }
    out = []
    for t in templates:
        version = versions.get((t.id, t.latest_version))
        shown = {c: getattr(version or t, c) for c in _CONTENT}
        updated = version.created_at if version is not None else t.updated_at
        out.append(
            SimpleNamespace(
                id=t.id,
                template_key=t.template_key,
                latest_version=t.latest_version,
                updated_at=updated,
                **shown,
            )
        )
    return out


def create_draft(db: Session, scope: Scope, data: dict[str, Any]) -> Template:
    """HQ starts a template; it is validated in full when published."""
    scope.require_role(HQ)
    exists = db.execute(select(Template.id).where(Template.template_key == data["template_key"]))
    if exists.first():
        raise Invalid(
            "That template key is taken.",
            reason="duplicate",
            errors={"template_key": ["Already used by another template."]},
        )
    t = Template(template_key=data["template_key"], created_by=scope.user_id, body={})
    _apply(t, data)
    db.add(t)
    db.flush()
    return t


def update_draft(db: Session, scope: Scope, template_id: str, data: dict[str, Any]) -> Template:
    """HQ edits the draft; published versions never change."""
    scope.require_role(HQ)
    t = get_template(db, scope, template_id)
    _apply(t, data)
    db.flush()
    return t


def publish(
    db: Session,
    scope: Scope,
    template_id: str,
    published_by: str | None = None,
) -> TemplateVersion:
    """Validate the draft and freeze it as the next immutable version."""
    scope.require_role(HQ)
    t = db.execute(
        select(Template).where(Template.id == template_id).with_for_update()
    ).scalar_one_or_none()
    if t is None:
        raise NotFound("No template with that id.")
    if t.archived:
        raise Conflict("This template is archived.", reason="archived")
    _check(to_document(t))
    t.latest_version += 1
    version = TemplateVersion(
        draft_id=t.id,
        template_key=t.template_key,
        version=t.latest_version,
        category=t.category,
        title_zh=t.title_zh,
        title_en=t.title_en,
        description_zh=t.description_zh,
        description_en=t.description_en,
        pass_threshold=t.pass_threshold,
        body=json.loads(json.dumps(t.body)),
        published_by=published_by or scope.user_id,
    )
    db.add(version)
    db.flush()
    # The schedule's slots nobody has begun are run in the new version, as the top-up's next
    # ones will be: one schedule hands out one checklist, not two for the coming two weeks.
    moved = schedule_service.follow_version(db, t.id, version.id)
    db.add(
        AuditEvent(
            actor_id=version.published_by,
            entity="template",
            entity_id=t.id,
            action="publish",
            changes={
                "latest_version": [t.latest_version - 1, t.latest_version],
                "version_id": version.id,
                "template_key": t.template_key,
                "occurrences_moved": moved,
            },
        )
    )
    db.flush()
    return version


def list_versions(db: Session, scope: Scope, template_id: str) -> list[TemplateVersion]:
    """Every published version of a template, newest first."""
    t = get_template(db, scope, template_id)
    return list(
        db.execute(
            select(TemplateVersion)
            .where(TemplateVersion.draft_id == t.id)
            .order_by(TemplateVersion.version.desc())
        ).scalars()
    )


def get_version(db: Session, version_id: str) -> TemplateVersion:
    """One published version (every signed-in user may read published templates)."""
    v = db.get(TemplateVersion, version_id)
    if v is None or v.deleted_at is not None:
        raise NotFound("No template version with that id.")
    return v


def latest_version(db: Session, template_key: str) -> TemplateVersion | None:
    """The newest published version for a key."""
    return db.execute(
        select(TemplateVersion)
        .where(TemplateVersion.template_key == template_key)
        .order_by(TemplateVersion.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def load_library() -> list[dict[str, Any]]:
    """The shipped template documents, by key."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(LIBRARY_DIR.glob("*.json"))]


def install_library(db: Session, scope: Scope) -> list[TemplateVersion]:
    """Create and publish every library template whose key is not there yet."""
    out = []
    for doc in load_library():
        if db.execute(
            select(Template.id).where(Template.template_key == doc["template_key"])
        ).first():
            continue
        _check(doc)
        t = create_draft(db, scope, doc)
        out.append(publish(db, scope, t.id))
    return out
