"""Rev allocation: rows are written with pending (negative) revs and stamped just before commit.

Commit order must equal rev order, or a puller could pass a cursor beyond a transaction that
commits late. Every writer therefore takes the deployment's counter row lock as the last step
before COMMIT, turns its pending revs into real ones, and commits, which releases the lock.
Validation and row writes happen before, outside the lock, so pushers only queue for the stamp.
On PostgreSQL a batch insert goes to a temporary staging copy of its table and is moved into
place by the stamp with its final revs, so a pushed row is written once instead of twice.
SQLite needs neither: its write transactions take the database's one write lock at BEGIN
(store/db.py), so revs taken from the counter as rows are written already follow commit order.

Per-column revs (`col_revs`) record, for each column changed after the row was created, the rev
of that change and the device that made it ([rev, device_id]; device None for the server). The
placeholder PENDING means "this row's own server_rev", so stamping never rewrites JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, inspect, select, text, update
from sqlalchemy.orm import Session

from store.models import (
    Action,
    Attachment,
    Conflict,
    Inspection,
    Occurrence,
    Response,
    Site,
    SiteAssignment,
    SyncCounter,
    Synced,
    TemplateVersion,
)

PENDING = -1
REVVED_MODELS: tuple[type, ...] = (
    Site,
    TemplateVersion,
    Occurrence,
    Inspection,
    Response,
    Attachment,
    Action,
    SiteAssignment,
    Conflict,
)
_UNTRACKED = {"server_rev", "col_revs", "created_at", "updated_at"}


def next_pending(session: Session, table: Table, count: int = 1, staged: bool = False) -> int:
    """Reserve `count` revs; returns the first; the rest count down from it. Pending
    (negative) revs for `stamp` to replace, except on SQLite, where they are final.
    `staged`: every one of these rows goes to the table's staging copy, none into the table."""
    if session.get_bind().dialect.name == "sqlite":
        # Core, on the session's connection: this may run inside a flush.
        counter = SyncCounter.__table__
        top = (
            session.connection()
            .execute(
                update(counter)
                .where(counter.c.id == 1)
                .values(value=counter.c.value + count)
                .returning(counter.c.value)
            )
            .scalar_one()
        )
        session.info["sqlite_top"] = top
        return top
    seq = session.info.get("pending_seq", 0)
    session.info["pending_seq"] = seq + count
    session.info.setdefault("pending_tables", set()).add(table.name)
    if not staged:
        session.info.setdefault("direct_tables", set()).add(table.name)
    return -(seq + 1)


def resolve_col_rev(value: Any, row_rev: int) -> tuple[int, str | None]:
    """(rev, device) of a column's last change; rev 0 = never changed since creation."""
    if value is None:
        return 0, None
    rev, device = value
    return (row_rev if rev == PENDING else rev), device


def updated_col_revs(
    col_revs: dict[str, Any] | None, row_rev: int, changed: list[str], device_id: str | None = None
) -> dict:
    """col_revs after `changed` columns change in this transaction (by `device_id`)."""
    out: dict[str, Any] = {}
    for col, (rev, device) in (col_revs or {}).items():
        # A pending marker from an earlier commit now means that commit's rev.
        out[col] = [row_rev if rev == PENDING and row_rev > 0 else rev, device]
    for col in changed:
        out[col] = [PENDING, device_id]
    return out


def _on_before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    """Give every new or changed ORM row of a synced table a pending rev."""
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, REVVED_MODELS):
            continue
        state = inspect(obj)
        table = obj.__table__
        if obj in session.new:
            obj.server_rev = next_pending(session, table)
            continue
        changed = [
            attr.key
            for attr in state.mapper.column_attrs
            if attr.key not in _UNTRACKED and state.attrs[attr.key].history.has_changes()
        ]
        if not changed:
            continue
        committed_rev = state.committed_state.get("server_rev", obj.server_rev)
        if obj.server_rev is not None and obj.server_rev < 0:
            committed_rev = obj.server_rev  # already pending in this transaction
        else:
            obj.server_rev = next_pending(session, table)
        if isinstance(obj, Synced):
            obj.col_revs = updated_col_revs(
                obj.col_revs, committed_rev or 0, changed, session.info.get("device_id")
            )


def _on_before_commit(session: Session) -> None:
    """Staged rows only reach their table through `stamp`: committing without it would drop
    them silently, so refuse."""
    if session.info.get("staged_tables"):
        raise RuntimeError("staged rows were not stamped: commit through api.db.commit()")


# What a transaction notes in `session.info` about its revs (see next_pending and stage).
_TRANSACTION_NOTES = (
    "pending_seq",
    "pending_tables",
    "direct_tables",
    "staged_tables",
    "sqlite_top",
)


def _on_after_rollback(session: Session) -> None:
    """A rolled-back transaction's revs and staged rows are gone: so are its notes, or the
    session's next transaction would stamp or report them."""
    if session.in_nested_transaction():
        # Only a savepoint rolled back: the rows written before it still need their revs
        # stamped (pending revs handed out inside it are simply never used). SQLite's counter
        # went back with the savepoint, so its noted top may be ahead of it: forget that.
        session.info.pop("sqlite_top", None)
        return
    for key in _TRANSACTION_NOTES:
        session.info.pop(key, None)


def install(session_cls: Any) -> None:
    """Register the flush, commit and rollback hooks on a Session class or sessionmaker."""
    for name, hook in (
        ("before_flush", _on_before_flush),
        ("before_commit", _on_before_commit),
        ("after_rollback", _on_after_rollback),
    ):
        if not event.contains(session_cls, name, hook):
            event.listen(session_cls, name, hook)


_STAGE_PREFIX = "stage_"


def stage(session: Session, table: Table) -> str:
    """The name of this connection's staging copy of `table` (PostgreSQL): a temporary table
    emptied at every commit, filled by a batch insert and moved into place by `stamp`."""
    name = f"{_STAGE_PREFIX}{table.name}"
    # Asked every time, not remembered per connection: a transaction that created the table
    # and then rolled back took the table with it.
    session.connection().exec_driver_sql(
        f'CREATE TEMPORARY TABLE IF NOT EXISTS "{name}" '
        f'(LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
    )
    session.info.setdefault("staged_tables", set()).add(table.name)
    return name


def stamp(session: Session) -> int | None:
    """Lock the counter, turn pending revs into real ones; call last, right before commit."""
    session.flush()
    count = session.info.pop("pending_seq", 0)
    tables = session.info.pop("pending_tables", set())
    if not count:
        return session.info.pop("sqlite_top", None)  # SQLite's revs are final already
    top = session.execute(
        update(SyncCounter)
        .where(SyncCounter.id == 1)
        .values(value=SyncCounter.value + count)
        .returning(SyncCounter.value)
    ).scalar_one()
    base = top - count
    staged = session.info.pop("staged_tables", set())
    direct = session.info.pop("direct_tables", set())
    for model in REVVED_MODELS:
        table = model.__table__
        if table.name not in tables:
            continue
        if table.name in direct:
            session.execute(
                update(table)
                .where(table.c.server_rev < 0)
                .values(server_rev=base - table.c.server_rev),
                execution_options={"synchronize_session": False},
            )
        if table.name in staged:
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            revved = ", ".join(
                f"{base} - server_rev" if c.name == "server_rev" else f'"{c.name}"'
                for c in table.columns
            )
            session.execute(
                text(
                    f'INSERT INTO "{table.name}" ({columns}) '
                    f'SELECT {revved} FROM "{_STAGE_PREFIX}{table.name}"'
                )
            )
    # Loaded objects still hold their pending revs; reload them on next access.
    session.expire_all()
    return top


def advance(session: Session) -> None:
    """Take one rev for no row: once committed, the cursor moves on with nothing new under it
    (sync/dumps.py: FreshCursor). The counter's row stays locked until the commit, as a
    stamp's does."""
    counter = SyncCounter.__table__
    session.execute(update(counter).where(counter.c.id == 1).values(value=counter.c.value + 1))


def current_rev(session: Session) -> int:
    """The highest rev committed as seen by this transaction's snapshot."""
    return session.execute(select(SyncCounter.value).where(SyncCounter.id == 1)).scalar_one()
