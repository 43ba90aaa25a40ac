"""Domain errors: plain exceptions carrying data; the API maps them to HTTP in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a message for a person, a stable reason word, optional per-field errors."""

    status = 400
    reason = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        errors: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.errors = errors
        self.extra = extra or {}


class NotFound(DomainError):
    """The record does not exist, or the caller may not know that it does."""

    status = 404
    reason = "not_found"


class Forbidden(DomainError):
    """The caller may not do this."""

    status = 403
    reason = "forbidden"


class Unauthorized(DomainError):
    """Missing, invalid or expired credentials."""

    status = 401
    reason = "unauthorized"


class SignInEnded(Unauthorized):
    """The token's sign-in has ended: signed out, cut off when a spent refresh token came
    back, or by a change to the account (its password, deactivation)."""

    reason = "session_ended"

    def __init__(self) -> None:
        super().__init__(
            "This sign-in has ended (signed out, or the account or its password changed); "
            "sign in again."
        )


class Invalid(DomainError):
    """The request is well formed but breaks a rule; `errors` names the fields."""

    status = 422
    reason = "invalid"


class Conflict(DomainError):
    """The request clashes with the current state (stale data, duplicates)."""

    status = 409
    reason = "conflict"


class Unavailable(DomainError):
    """A dependency (database, blob store) cannot be reached right now."""

    status = 503
    reason = "unavailable"
