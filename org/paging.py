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
    items = db.execute(stmt.limit(page_size).offset((page - 1) * page_size)).scalars().all()
    return list(items), total
