"""Liveness of the service and its dependencies."""

from __future__ import annotations

from flask import current_app
from marshmallow import fields
from sqlalchemy import text

from api import db
from api.blueprints.common import make_blueprint
from api.errors import envelope
from schemas.common import Out

blp = make_blueprint("health", "/health", "Service health")


class HealthOut(Out):
    """Each dependency's state."""

    status = fields.String()
    database = fields.String()
    storage = fields.String()


@blp.route("")
@blp.response(200, HealthOut)
@blp.alt_response(503, response="DEFAULT_ERROR", description="A dependency is down")
def health():
    """Report whether the database and the blob store answer."""
    parts = {"database": "ok", "storage": "ok"}
    try:
        db.session().execute(text("SELECT 1"))
    except Exception:  # any failure to reach the database counts as down
        parts["database"] = "unavailable"
    store = current_app.extensions.get("blob_store")
    if store is not None:
        try:
            store.ping()
        except Exception:
            parts["storage"] = "unavailable"
    failing = [name for name, state in parts.items() if state != "ok"]
    if failing:
        return envelope(
            503,
            f"Unavailable: {', '.join(failing)}.",
            reason="dependency_down",
            headers={"Retry-After": "5"},
            extra=parts,
        )
    return {"status": "ok", **parts}


def blueprints():
    """This module's blueprints."""
    return [blp]
