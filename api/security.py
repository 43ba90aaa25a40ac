"""Passwords (argon2), signed expiring tokens (JWT), and the request's current user."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Callable
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from api.config import DEMO_PASSWORD
from api.db import session
from store.errors import SignInEnded, Unauthorized
from store.models import RefreshToken, User
from store.types import utcnow
from sync.scope import Scope, scope_for

_hasher = PasswordHasher()
ALGORITHM = "HS256"
# A fixed hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class TokenReused(Unauthorized):
    """A spent refresh token was presented again; its family is now revoked (commit that)."""

    reason = "token_reused"


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Check a password against its stored hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(db: Session, email: str, password: str) -> User:
    """The active user with these credentials, or Unauthorized."""
    user = db.execute(select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        raise Unauthorized("Wrong email or password.", reason="bad_credentials")
    if not verify_password(user.password_hash, password):
        raise Unauthorized("Wrong email or password.", reason="bad_credentials")
    if current_app.config["APP_ENV"] == "production" and password == DEMO_PASSWORD:
        raise Unauthorized(
            "The demo password is refused in production; ask HQ for a new one.",
            reason="demo_password_refused",
        )
    return user


def _encode(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


# Verified tokens, by token and key: a device sends the same access token with every request
# of a sync, and checking its signature cost more than the rest of an empty pull's Python.
# Only tokens that verified are kept (a failure raises, and lru_cache keeps no exceptions);
# expiry is checked on every use, so a kept token still expires on time.
_VERIFIED_TOKENS = 4096


@functools.lru_cache(maxsize=_VERIFIED_TOKENS)
def _verified(token: str, key: str) -> dict[str, Any]:
    claims = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        options={"require": ["exp", "iat", "sub", "typ"], "verify_exp": False},
    )
    if type(claims["exp"]) is not int:
        raise jwt.InvalidTokenError("exp is not a whole number of seconds")
    if type(claims.get("sid", "")) is not str:
        raise jwt.InvalidTokenError("sid is not a string")
    return claims


def _decode(token: str, expected_type: str, expired_ok: bool = False) -> dict[str, Any]:
    try:
        claims = _verified(token, current_app.config["SECRET_KEY"])
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not valid.", reason="token_invalid") from None
    # As PyJWT checks it (no leeway): expired at the second `exp` names.
    if not expired_ok and claims["exp"] <= dt.datetime.now(dt.UTC).timestamp():
        raise Unauthorized(
            "Your token has expired; refresh it or sign in again.", reason="token_expired"
        )
    if claims.get("typ") != expected_type:
        expected = {"access": "an access token", "refresh": "a refresh token"}[expected_type]
        raise Unauthorized(f"Expected {expected}.", reason="token_invalid")
    # A copy: the kept claims are shared by every request that sends this token.
    return dict(claims)


def issue_tokens(db: Session, user: User, family: str | None = None) -> dict[str, Any]:
    """A new access token and a single-use refresh token."""
    now = utcnow()
    family = family or secrets.token_hex(16)
    access_ttl = current_app.config["ACCESS_TOKEN_TTL"]
    refresh_ttl = current_app.config["REFRESH_TOKEN_TTL"]
    access = _encode(
        {
            "sub": user.id,
            "role": user.role,
            "typ": "access",
            # The sign-in it belongs to: signing out (or a stolen refresh token's reuse) ends
            # it, and its access tokens stop working at once, not when they expire.
            "sid": family,
            "iat": now,
            "exp": now + dt.timedelta(seconds=access_ttl),
        }
    )
    jti = secrets.token_hex(16)
    expires = now + dt.timedelta(seconds=refresh_ttl)
    db.add(RefreshToken(jti=jti, user_id=user.id, family=family, expires_at=expires))
    refresh = _encode({"sub": user.id, "typ": "refresh", "jti": jti, "iat": now, "exp": expires})
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": access_ttl,
        "user": user,
    }


def rotate_refresh(db: Session, token: str) -> dict[str, Any]:
    """Spend a refresh token for a new pair; reuse of a spent one revokes its family."""
    claims = _decode(token, "refresh")
    row = db.execute(
        select(RefreshToken).where(RefreshToken.jti == claims.get("jti")).with_for_update()
    ).scalar_one_or_none()
    # The sign-in may have ended while this token was being issued (a sign-out racing a
    # refresh revokes the rows it sees, not the one the refresh was inserting): any revoked
    # token of the family ends it.
    if (
        row is None
        or row.revoked_at is not None
        or db.execute(select(session_ended(row.family))).scalar()
    ):
        raise Unauthorized(
            "This refresh token is no longer valid; sign in again.", reason="token_revoked"
        )
    if row.used_at is not None:
        # A spent token came back: someone holds a copy. Cut off the whole family.
        db.execute(
            update(RefreshToken)
            .where(RefreshToken.family == row.family)
            .values(revoked_at=utcnow())
        )
        raise TokenReused("This refresh token was already used; sign in again.")
    row.used_at = utcnow()
    user = db.get(User, row.user_id)
    if user is None or not user.active:
        raise Unauthorized("This account is disabled.", reason="account_disabled")
    return issue_tokens(db, user, family=row.family)


def end_session(db: Session, token: str) -> None:
    """Sign out: revoke a refresh token's session (its family, every later token of that
    sign-in); a token already spent, revoked or expired is fine (a phone that was off for
    weeks still signs out cleanly), a forged or garbled one is 401."""
    claims = _decode(token, "refresh", expired_ok=True)
    family = db.execute(
        select(RefreshToken.family).where(RefreshToken.jti == claims.get("jti"))
    ).scalar_one_or_none()
    if family is not None:
        db.execute(
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


# API endpoints anyone may call; every other /api/v1 endpoint needs a valid access token.
PUBLIC_ENDPOINTS = frozenset(
    {"auth.login", "auth.refresh", "auth.logout", "health.health", "api-docs.openapi_json"}
    | {"api-docs.openapi_swagger_ui"}
)


def token_claims() -> dict[str, Any]:
    """The verified claims of the request's bearer token (checked once per request)."""
    claims = g.get("token_claims")
    if claims is None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "Sign in first: send 'Authorization: Bearer <access token>'.",
                reason="not_authenticated",
            )
        claims = _decode(token.strip(), "access")
        g.token_claims = claims
    return claims


def require_token() -> None:
    """Before any API view: no valid token, no further look at the request (401 before a
    body is validated), without touching the database."""
    if request.endpoint is None or not request.path.startswith("/api/"):
        return
    if request.endpoint not in PUBLIC_ENDPOINTS:
        token_claims()


def session_ended(family: Any) -> Any:
    """Whether a sign-in (a refresh token family) has ended (SignInEnded says how)."""
    return exists().where(RefreshToken.family == family, RefreshToken.revoked_at.is_not(None))


def current_user() -> User:
    """The signed-in user of this request (Unauthorized if none, or if the sign-in its token
    belongs to has ended)."""
    user = getattr(g, "user", None)
    if user is None:
        claims = token_claims()
        sid = claims.get("sid")
        if sid is None:  # a token issued before tokens named their sign-in
            user, ended = session().get(User, claims["sub"]), False
        else:
            row = (
                session()
                .execute(select(User, session_ended(sid)).where(User.id == claims["sub"]))
                .one_or_none()
            )
            user, ended = row if row is not None else (None, False)
        if user is None or not user.active:
            raise Unauthorized(
                "This account no longer exists or is disabled.", reason="account_disabled"
            )
        if ended:
            raise SignInEnded()
        g.user = user
    return user


def current_scope() -> Scope:
    """The scope of the signed-in user, computed once per request."""
    scope = getattr(g, "scope", None)
    if scope is None:
        scope = scope_for(session(), current_user())
        g.scope = scope
    return scope


def login_required(func: Callable) -> Callable:
    """Require a valid access token before the view runs."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_scope()
        return func(*args, **kwargs)

    return wrapper
