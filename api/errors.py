"""One JSON error envelope for every non-2xx: {code, status, message, errors?, reason?}."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Any

import psycopg
from flask import Flask, Response, current_app, has_request_context, jsonify, request
from sqlalchemy.exc import IntegrityError, InternalError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from api.i18n import error_message, request_language
from store.errors import DomainError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# The review console's pages (api/console), which answer errors with a page of their own.
CONSOLE_PREFIX = "/console/"
_DEFAULT_MESSAGES = {
    400: "The request could not be understood; check that the body is valid JSON.",
    401: "Sign in first: send 'Authorization: Bearer <access token>'.",
    403: "You are not allowed to do this.",
    404: "Nothing was found at this address.",
    405: "This address does not accept that method.",
    409: "The request conflicts with the current state of the record.",
    413: "The request body is larger than this service accepts.",
    415: "Send the body as JSON with 'Content-Type: application/json'.",
    422: "Some fields are invalid; see 'errors'.",
    429: "Too many requests; wait before trying again.",
    500: "Something went wrong on our side; it has been logged.",
    503: "The service is temporarily unavailable; retry shortly.",
}


def envelope(
    code: int,
    message: str | None = None,
    *,
    errors: Any = None,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Build an error response in the one envelope."""
    default = _DEFAULT_MESSAGES.get(code, HTTPStatus(code).description)
    lang = request_language()
    body: dict[str, Any] = {
        "code": code,
        "status": HTTPStatus(code).phrase,
        "message": error_message(message or default, code, default, lang),
    }
    if errors:
        body["errors"] = errors
    if reason:
        body["reason"] = reason
    if extra:
        body.update(extra)
    resp = jsonify(body)
    resp.status_code = code
    resp.headers["Content-Language"] = lang
    resp.vary.add("Accept-Language")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    # HTTP requires a challenge on every 401; the API's scheme is a bearer token.
    if code == 401 and "WWW-Authenticate" not in resp.headers and _is_api_request():
        resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


def _is_api_request() -> bool:
    return has_request_context() and request.path.startswith("/api/")


# Headers of a werkzeug exception that describe its HTML page, not the HTTP semantics.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


def _http_headers(error: HTTPException) -> dict[str, str]:
    """The headers HTTP requires with this error (Allow on a 405, WWW-Authenticate on a 401,
    Retry-After...), without those of werkzeug's HTML body."""
    return {k: v for k, v in error.get_headers() if k.lower() not in _BODY_HEADERS}


def _method_not_allowed_message(error: MethodNotAllowed) -> str | None:
    allowed = ", ".join(
        sorted(m for m in error.valid_methods or () if m not in {"HEAD", "OPTIONS"})
    )
    if not allowed or not has_request_context():
        return None
    return f"This address does not accept {request.method}; it accepts {allowed}."


def _trailing_slash_message() -> str | None:
    """A 404 for '/x/' when '/x' is a route: say so rather than 'nothing here'."""
    if not has_request_context() or request.url_rule is not None:
        return None  # a view's own 404 (a missing record), not an unknown address
    path = request.path
    if len(path) < 2 or not path.endswith("/"):
        return None
    bare = path.rstrip("/") or "/"
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(bare, method=request.method)
    except (MethodNotAllowed, RequestRedirect):
        pass  # the route exists (for other methods, or under a redirect)
    except HTTPException:
        return None
    return f"Nothing was found at this address; remove the trailing slash: {bare}"


def _flatten_locations(errors: Any) -> Any:
    """webargs nests errors under the location ('json', 'query'); name the field directly."""
    if isinstance(errors, dict) and len(errors) == 1:
        ((location, inner),) = errors.items()
        if location in {"json", "query", "form", "headers", "files", "view_args"}:
            return inner
    return errors


def _summary(errors: Any) -> str:
    """A one-line message naming the first offending fields."""
    if isinstance(errors, dict) and errors:
        parts = []
        for field, msgs in list(errors.items())[:3]:
            first = msgs[0] if isinstance(msgs, list) and msgs else msgs
            if isinstance(first, dict):
                first = _summary(first)
            parts.append(f"{field}: {first}")
        return "Invalid input: " + "; ".join(str(p) for p in parts)
    return _DEFAULT_MESSAGES[422]


def _console_page(status: int, message: str) -> Response | None:
    """The console's own error page, for an address under /console/ (see api/console)."""
    page = current_app.extensions.get("console_error_page")
    if page is None or not request.path.startswith(CONSOLE_PREFIX):
        return None
    return page(status, message)


def handle_http(error: HTTPException) -> Response:
    """Werkzeug and smorest aborts."""
    code = error.code or 500
    page = _console_page(code, error.description or "")
    if page is not None:
        return page
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    errors = _flatten_locations(errors)
    message = data.get("message")
    if message is None and errors and code in (400, 422):
        message = _summary(errors)
    if message is None and error.description and code not in _DEFAULT_MESSAGES:
        message = error.description
    if message is None and isinstance(error, MethodNotAllowed):
        message = _method_not_allowed_message(error)
    if message is None and isinstance(error, NotFound):
        message = _trailing_slash_message()
    headers = {**_http_headers(error), **(data.get("headers") or {})}
    if code == 429 and error.description:
        message = f"Too many requests ({error.description}); wait before trying again."
    return envelope(code, message, errors=errors, reason=data.get("reason"), headers=headers)


def handle_domain(error: DomainError) -> Response:
    """Our own domain errors."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if error.status == 503 else None
    return envelope(
        error.status,
        error.message,
        errors=error.errors,
        reason=error.reason,
        headers=headers,
        extra=error.extra,
    )


def handle_db_unavailable(error: Exception) -> Response:
    """Lost or refused database connections, or a statement over its time limit: fail fast
    and tell the client when to retry."""
    log.warning("database unavailable: %s", error)
    if isinstance(getattr(error, "orig", error), psycopg.errors.QueryCanceled):
        message, reason = "The database took too long to answer; retry shortly.", "database_busy"
    else:
        message, reason = "The database cannot be reached right now; retry shortly.", None
    return envelope(
        503,
        message,
        reason=reason or "database_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def handle_db_internal(error: InternalError | psycopg.InternalError) -> Response:
    """The server ended a session left idle inside a transaction (its limit) is a lost
    connection to the client; any other internal database error is ours."""
    if isinstance(getattr(error, "orig", error), psycopg.errors.IdleInTransactionSessionTimeout):
        return handle_db_unavailable(error)
    return handle_unexpected(error)


def handle_integrity(
    error: IntegrityError | psycopg.IntegrityError | sqlite3.IntegrityError,
) -> Response:
    """A uniqueness or reference rule the service did not check first."""
    log.info("integrity error: %s", getattr(error, "orig", error))
    return envelope(
        409,
        "This change clashes with an existing record (a duplicate or a missing reference).",
        reason="integrity_conflict",
    )


def handle_unexpected(error: Exception) -> Response:
    """Anything else: log it with its traceback, answer 500 in the envelope."""
    if isinstance(error, HTTPException):
        return handle_http(error)
    log.exception("unhandled error")
    page = _console_page(500, _DEFAULT_MESSAGES[500])
    return page if page is not None else envelope(500)


def register(app: Flask) -> None:
    """Install the handlers; called after flask-smorest registered its own."""
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(DomainError, handle_domain)
    app.register_error_handler(OperationalError, handle_db_unavailable)
    app.register_error_handler(IntegrityError, handle_integrity)
    # The sync engine's hot paths (pull pages, COPY on push) use the driver's own connection,
    # so a lost database or a duplicate row surfaces as the driver's error, not SQLAlchemy's.
    app.register_error_handler(psycopg.OperationalError, handle_db_unavailable)
    app.register_error_handler(psycopg.IntegrityError, handle_integrity)
    # SQLite's bulk insert (sync/writer.py) runs on the driver's connection too.
    app.register_error_handler(sqlite3.IntegrityError, handle_integrity)
    app.register_error_handler(InternalError, handle_db_internal)
    app.register_error_handler(psycopg.InternalError, handle_db_internal)
    app.register_error_handler(Exception, handle_unexpected)
