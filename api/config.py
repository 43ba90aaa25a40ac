"""Configuration from environment variables only, with development defaults."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

DEMO_PASSWORD = "demo-pass-2026"
ENVIRONMENTS = ("development", "testing", "production")
# HMAC keys shorter than this can be guessed offline from one token, and every token forged.
MIN_SECRET_BYTES = 32
_PLACEHOLDER_SECRETS = {"...", "changeme", "change-me", "secret", "secret_key", "dev", "test"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be a whole number, got {raw!r}") from exc


def _secret_key(instance: Path, env: dict[str, str], production: bool) -> str:
    """The signing key: from SECRET_KEY, or generated once and kept in the instance folder."""
    key = env.get("SECRET_KEY")
    if (
        key
        and production
        and (len(key.encode()) < MIN_SECRET_BYTES or key.strip().lower() in _PLACEHOLDER_SECRETS)
    ):
        raise RuntimeError(
            f"SECRET_KEY must be a random value of at least {MIN_SECRET_BYTES} characters "
            "when APP_ENV=production; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if key:
        return key
    if production:
        raise RuntimeError(
            "SECRET_KEY must be set when APP_ENV=production; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def load_config(env: dict[str, str] | None = None, instance_path: str | None = None) -> dict:
    """Build the app configuration from an environment mapping (os.environ by default)."""
    env = dict(os.environ if env is None else env)
    instance = Path(env.get("INSTANCE_PATH") or instance_path or Path.cwd() / "instance")
    app_env = (env.get("APP_ENV") or "development").strip().lower()
    if app_env not in ENVIRONMENTS:
        # A typo ("prod") must not quietly run production without its safeguards.
        raise RuntimeError(
            f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env['APP_ENV']!r}"
        )
    production = app_env == "production"
    cfg: dict[str, Any] = {
        "APP_ENV": app_env,
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": env.get("DATABASE_URL") or f"sqlite:///{instance / 'inspections.db'}",
        "SECRET_KEY": _secret_key(instance, env, production),
        "MEDIA_STORE": env.get("MEDIA_STORE", "local"),
        "MEDIA_ROOT": env.get("MEDIA_ROOT") or str(instance / "media"),
        "S3_BUCKET": env.get("S3_BUCKET"),
        "S3_PREFIX": env.get("S3_PREFIX", ""),
        "S3_REGION": env.get("S3_REGION", "us-east-1"),
        "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL"),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        "LOGIN_RATE_LIMIT": env.get("LOGIN_RATE_LIMIT", "10 per minute"),
        "ACCESS_TOKEN_TTL": _int(env, "ACCESS_TOKEN_TTL", 900),
        "REFRESH_TOKEN_TTL": _int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_BODY_BYTES", 32 * 1024 * 1024),
        "MAX_UPLOAD_BYTES": _int(env, "MAX_UPLOAD_BYTES", 40 * 1024 * 1024),
        "MAX_IMAGE_PIXELS": _int(env, "MAX_IMAGE_PIXELS", 60_000_000),
        "MAX_JSON_DEPTH": _int(env, "MAX_JSON_DEPTH", 32),
        # PostgreSQL: a request's statement (or its wait for a lock) is cancelled after this,
        # and a session idle inside a transaction is ended (0 = no limit). CLI maintenance
        # (migrations, purges) lifts the statement limit for itself.
        "DB_STATEMENT_TIMEOUT_MS": _int(env, "DB_STATEMENT_TIMEOUT_MS", 30_000),
        "DB_IDLE_IN_TRANSACTION_MS": _int(env, "DB_IDLE_IN_TRANSACTION_MS", 60_000),
        "SYNC_PULL_LIMIT": _int(env, "SYNC_PULL_LIMIT", 1000),
        "SYNC_PUSH_MAX_RECORDS": _int(env, "SYNC_PUSH_MAX_RECORDS", 20000),
        "TOMBSTONE_HORIZON_DAYS": _int(env, "TOMBSTONE_HORIZON_DAYS", 180),
        "IDEMPOTENCY_RETENTION_DAYS": _int(env, "IDEMPOTENCY_RETENTION_DAYS", 30),
        "UPLOAD_EXPIRY_SECONDS": _int(env, "UPLOAD_EXPIRY_SECONDS", 24 * 3600),
        "PRESIGN_SECONDS": _int(env, "PRESIGN_SECONDS", 900),
        "CONSOLE_SESSION_SECONDS": _int(env, "CONSOLE_SESSION_SECONDS", 8 * 3600),
        # Secure cookies need HTTPS; on by default in production, where TLS is expected.
        "CONSOLE_SECURE_COOKIE": env.get("CONSOLE_SECURE_COOKIE", "1" if production else "0")
        == "1",
    }
    if production and cfg["DATABASE_URL"].startswith("sqlite"):
        # Several instances cannot share a SQLite file: production needs a server database.
        raise RuntimeError("DATABASE_URL must point at PostgreSQL when APP_ENV=production")
    return cfg
