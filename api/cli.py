"""Command-line tasks: migrate, seed the demo, housekeeping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

from api import db
from api.config import DEMO_PASSWORD
from api.security import hash_password
from inspections import schedule_service
from media import uploads
from org import admin, demo
from store.db import without_statement_timeout
from store.enums import HQ
from store.errors import DomainError
from sync import idempotency, purge
from sync.scope import Scope

ROOT = Path(__file__).resolve().parent.parent
# The same floor as the users API (schemas/org.py).
MIN_PASSWORD = 10
# The command line acts for the operator, with HQ's reach.
SYSTEM = Scope(user_id=None, role=HQ, region_id=None, site_ids=None)


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration pointing at our migrations."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def migrate_database(engine) -> None:
    """Bring the schema to the newest migration."""
    cfg = alembic_config()
    with engine.begin() as conn:
        without_statement_timeout(conn)  # a migration may rewrite big tables
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def register(app: Flask) -> None:
    """Attach the commands to the app's CLI."""

    @app.cli.command("migrate")
    def migrate_cmd() -> None:
        """Apply database migrations."""
        migrate_database(current_app.extensions["db_engine"])
        click.echo("database migrated")

    sync_group = AppGroup("sync", help="Sync housekeeping.")
    media_group = AppGroup("media", help="Media housekeeping.")

    @sync_group.command("purge")
    def sync_purge_cmd() -> None:
        """Purge tombstones past the horizon, idempotency records past their retention and
        sign-ins (refresh tokens, console sessions) past their expiry."""
        cfg = current_app.config
        session = db.session()
        without_statement_timeout(session.connection())
        removed = purge.purge_tombstones(session, dt.timedelta(days=cfg["TOMBSTONE_HORIZON_DAYS"]))
        forgotten = idempotency.purge(session, dt.timedelta(days=cfg["IDEMPOTENCY_RETENTION_DAYS"]))
        expired = admin.purge_expired_sign_ins(session)
        db.commit()
        click.echo(
            f"purged {removed} tombstones, {forgotten} idempotency records "
            f"and {expired} expired sign-ins"
        )

    @media_group.command("gc")
    def media_gc_cmd() -> None:
        """Clean up uploads that never completed."""
        from api.media import blob_store, limits

        result = uploads.gc(db.session(), blob_store(), limits().expiry)
        db.commit()
        click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items()))

    schedules_group = AppGroup("schedules", help="Schedules.")

    @schedules_group.command("generate")
    def schedules_generate_cmd() -> None:
        """Create the occurrences of the coming two weeks for every active schedule."""
        made = schedule_service.generate_all(db.session())
        db.commit()
        click.echo(f"{made} occurrences created")

    users_group = AppGroup("users", help="Accounts.")

    @users_group.command("create-hq")
    @click.argument("email")
    @click.option("--name", default="HQ", show_default=True, help="The person's name.")
    @click.password_option(help="Prompted for (twice) when not given; at least 10 characters.")
    def users_create_hq_cmd(email: str, name: str, password: str) -> None:
        """Create an HQ account: the first sign-in of a new deployment (HQ then adds the rest)."""
        if len(password) < MIN_PASSWORD or password == DEMO_PASSWORD:
            raise click.ClickException(
                f"Choose a password of at least {MIN_PASSWORD} characters (not the demo one)."
            )
        session = db.session()
        try:
            user = admin.create_user(
                session,
                SYSTEM,
                {"email": email, "name": name, "role": HQ},
                hash_password(password),
            )
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        db.commit()
        click.echo(f"HQ account {user.email} created; sign in with it to add the others")

    app.cli.add_command(schedules_group)
    app.cli.add_command(sync_group)
    app.cli.add_command(media_group)
    app.cli.add_command(users_group)

    @app.cli.command("seed-demo")
    @click.option("--if-empty", is_flag=True, help="Only seed a database with no users.")
    def seed_demo_cmd(if_empty: bool) -> None:
        """(Re-)create the demo organisation (development only)."""
        if current_app.config["APP_ENV"] == "production":
            raise click.ClickException("The demo organisation is refused in production.")
        session = db.session()
        if if_empty and not demo.is_empty(session):
            click.echo("database not empty; demo seed skipped")
            return
        demo.wipe(session)
        demo.seed(session, hash_password, DEMO_PASSWORD)
        db.commit()
        from api.demo_activity import seed_activity

        try:
            made = seed_activity(current_app)
        except Exception as exc:
            # Half a demo would pass --if-empty's check forever: leave the database empty.
            db.session().rollback()
            demo.wipe(db.session())
            db.commit()
            raise click.ClickException(
                f"The demo activity could not be made ({exc}); nothing was kept, run it again."
            ) from exc
        click.echo(
            f"demo organisation seeded with {len(made)} synced inspections; "
            f"password for every account: {DEMO_PASSWORD}"
        )
