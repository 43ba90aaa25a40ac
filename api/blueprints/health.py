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
@blp.alt_response(503, response="DEFAULT_ERROR", description="The database is down")
def health():
    """Whether the database and the blob store answer (200 'degraded' without the store)."""
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
    # Only a lost database takes the instance out of a load balancer: without the blob store
    # sync, review and reports still work, and uploads answer 503 with Retry-After themselves.
    if parts["database"] != "ok":
        return envelope(
            503,
            "Unavailable: database.",
            reason="dependency_down",
            headers={"Retry-After": "5"},
            extra=parts,
        )
    return {"status": "ok" if parts["storage"] == "ok" else "degraded", **parts}


def blueprints():
    """This module's blueprints."""
    return [blp]
