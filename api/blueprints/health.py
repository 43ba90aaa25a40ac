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
    # Each dependency's last state seen by this app: a failure's cause is logged when the
    # state changes, not on every probe of a load balancer.
    seen = current_app.extensions.setdefault("health_seen", dict(parts))
    try:
        db.session().execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database counts as down
        _down("database", exc, parts, seen)
    store = current_app.extensions.get("blob_store")
    if store is not None:
        try:
            store.ping()
        except Exception as exc:
            _down("storage", exc, parts, seen)
    for name, state in parts.items():
        if state == "ok" and seen[name] != "ok":
            current_app.logger.warning("health: %s is back", name)
        seen[name] = state
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


def _down(name: str, exc: Exception, parts: dict[str, str], seen: dict[str, str]) -> None:
    """Mark a dependency down; say why in the log when it was up before."""
    parts[name] = "unavailable"
    if seen[name] == "ok":
        current_app.logger.warning("health: %s unavailable: %s: %s", name, type(exc).__name__, exc)


def blueprints():
    """This module's blueprints."""
    return [blp]
