"""Blueprint registry: one module per resource."""

from __future__ import annotations

from flask_smorest import Api


def register(api: Api) -> None:
    """Register every blueprint under /api/v1."""
    from api.blueprints import (
        actions,
        admin,
        attachments,
        auth,
        conflicts,
        health,
        inspections,
        schedules,
        sync,
        templates,
    )

    for module in (
        health,
        auth,
        admin,
        templates,
        sync,
        conflicts,
        inspections,
        actions,
        attachments,
        schedules,
    ):
        for blp in module.blueprints():
            api.register_blueprint(blp, url_prefix=f"/api/v1{blp.url_prefix or ''}")
