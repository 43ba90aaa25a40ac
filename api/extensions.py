"""Flask extensions: the OpenAPI registry (flask-smorest) and the rate limiter."""

from __future__ import annotations

import marshmallow as ma
from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api


class ErrorOut(ma.Schema):
    """The one error envelope."""

    code = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    message = ma.fields.String(required=True)
    errors = ma.fields.Raw()
    reason = ma.fields.String()


class _Api(Api):
    ERROR_SCHEMA = ErrorOut


def _rate_key() -> str:
    return get_remote_address() or "unknown"


limiter = Limiter(key_func=_rate_key, default_limits=[], headers_enabled=True)


def login_key() -> str:
    """Rate-limit logins per client address and per account, so one cannot brute-force either."""
    email = ""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("email"), str):
        email = body["email"].strip().lower()
    return f"{_rate_key()}|{email}"


def init_app(app: Flask) -> Api:
    """Bind the extensions to the app; returns its OpenAPI registry."""
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
    api = _Api(app)
    app.extensions["smorest_api"] = api
    return api
