"""The HTTP adapter: app factory, blueprints, error envelope."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from api import db, errors, extensions, jsonio
from api.config import load_config


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides values read from the environment."""
    app = Flask(__name__, instance_relative_config=False)
    settings = load_config()
    settings.update(config or {})
    app.config.update(settings)
    app.config.update(
        API_TITLE="Inspections API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
            "info": {
                "description": "Inspections backend: REST for review and admin, "
                "WatermelonDB-compatible sync for offline devices."
            },
        },
    )
    logging.basicConfig(level=app.config.get("LOG_LEVEL", "INFO"))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from api.security import require_token

    # First of all: an API request without a valid token is refused before its body is read.
    app.before_request(require_token)
    jsonio.init_app(app)
    db.init_app(app)
    from api import media

    media.init_app(app)
    rest = extensions.init_app(app)
    from api import blueprints

    blueprints.register(rest)
    from api import console

    console.init_app(app)
    errors.register(app)
    from api import cli

    cli.register(app)
    return app
