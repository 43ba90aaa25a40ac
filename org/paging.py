"""Deterministic pagination of a SELECT."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def page_of(db: Session, stmt: Select, page: int, page_size: int) -> tuple[list[Any], int]:
    """Items of one page (the statement must already be ordered) and the total count."""
    total = db.execute(
        select(func.count()).select_from(stmt.order_by(None).subquery())
    ).scalar_one()
    offset = (page - 1) * page_size
    if offset >= total:
        # Past the end: nothing to fetch, and a huge page number never reaches the database
        # as an OFFSET it cannot hold.
        return [], total
    items = db.execute(stmt.limit(page_size).offset(offset)).scalars().all()
    return list(items), total
