"""The review console for regional managers and HQ: server-rendered pages under /console/,
signed in with a session cookie (HttpOnly, SameSite=Lax, Secure in production) and CSRF-checked
forms. It calls the same domain services, with the same scope, as the REST API."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from api.console.views import bp, page_for_error


def init_app(app: Flask) -> None:
    """Mount the console and configure its cookie."""
    production = app.config.get("APP_ENV") == "production"
    lifetime = dt.timedelta(seconds=int(app.config.get("CONSOLE_SESSION_SECONDS", 8 * 3600)))
    # Only the console uses a cookie (the API takes bearer tokens), so scope it to /console.
    app.config.update(
        SESSION_COOKIE_NAME="console_session",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(app.config.get("CONSOLE_SECURE_COOKIE", production)),
    )
    app.config["PERMANENT_SESSION_LIFETIME"] = lifetime
    # A form's CSRF token lives as long as the signed-in session it belongs to.
    app.config["WTF_CSRF_TIME_LIMIT"] = int(lifetime.total_seconds())
    app.register_blueprint(bp)
    # Errors no console view handles (an unknown console address, a method it does not take,
    # a failure) still answer with the console's page under /console/ (api/errors.py).
    app.extensions["console_error_page"] = page_for_error
