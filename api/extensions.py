"""Flask extensions: the OpenAPI registry (flask-smorest) and the rate limiter."""

from __future__ import annotations

import limits
import marshmallow as ma
from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api

from schemas.common import PeriodBound


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


# One address may fail this many times the per-account limit: several people behind one
# office or carrier address mistype, yet one address cannot walk through many accounts.
LOGIN_ADDRESS_FACTOR = 3


def login_account_limit() -> str:
    """Failed sign-ins allowed per account: LOGIN_RATE_LIMIT."""
    return current_app.config["LOGIN_RATE_LIMIT"]


def login_address_limit() -> str:
    """Failed sign-ins allowed per client address: LOGIN_ADDRESS_FACTOR x LOGIN_RATE_LIMIT."""
    items = limits.parse_many(login_account_limit())
    return "; ".join(
        f"{item.amount * LOGIN_ADDRESS_FACTOR} per {item.multiples} {item.GRANULARITY.name}"
        for item in items
    )


def login_account_key() -> str:
    """Rate-limit logins per account, from any address, so no password is brute-forced."""
    body = request.get_json(silent=True)
    # The API sends JSON, the console's sign-in form a form: one count per account for both.
    email = body.get("email") if isinstance(body, dict) else request.form.get("email")
    email = email.strip().lower() if isinstance(email, str) else ""
    return f"account|{email}"


def login_address_key() -> str:
    """Rate-limit logins per client address, so one client cannot try account after account."""
    return f"address|{_rate_key()}"


def init_app(app: Flask) -> Api:
    """Bind the extensions to the app; returns its OpenAPI registry."""
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
    api = _Api(app)
    # A date or a date-time: documented as a plain string (its description says which).
    api.register_field(PeriodBound, "string", None)
    app.extensions["smorest_api"] = api
    return api
