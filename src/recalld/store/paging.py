"""Cursor pagination by (sort value, id), relative to the requested order (contract 1.5)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

MAX_PAGE = 1000  # a larger limit is served as 1000 (contract R6)


def clamp_limit(limit: int) -> int:
    return min(limit, MAX_PAGE)


async def _cursor_key(conn: AsyncConnection, table: sa.Table, sort_expr, org_id: str, cursor_id: str | None):
    if cursor_id is None:
        return None
    row = (
        await conn.execute(
            sa.select(sort_expr, table.c.id).where(table.c.organization_id == org_id, table.c.id == cursor_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def page(
    conn: AsyncConnection,
    query: sa.Select,
    table: sa.Table,
    *,
    org_id: str,
    sort_expr: Any = None,
    before: str | None = None,
    after: str | None = None,
    limit: int = 50,
    ascending: bool = True,
) -> list[dict]:
    """Run `query` (already filtered) one page at a time; unknown cursors are ignored, as Letta does."""
    sort_expr = table.c.created_at if sort_expr is None else sort_expr
    key = sa.tuple_(sort_expr, table.c.id)
    after_key = await _cursor_key(conn, table, sort_expr, org_id, after)
    before_key = await _cursor_key(conn, table, sort_expr, org_id, before)
    if after_key is not None:
        query = query.where(key > after_key if ascending else key < after_key)
    if before_key is not None:
        query = query.where(key < before_key if ascending else key > before_key)
    # With only `before`, the page is the items nearest the cursor: read backwards, then turn around,
    # so the SDK's onward paging (before=<first item of the page>) sees every item once.
    backwards = before_key is not None and after_key is None
    forward = ascending != backwards
    if forward:
        query = query.order_by(sort_expr.asc(), table.c.id.asc())
    else:
        query = query.order_by(sort_expr.desc(), table.c.id.desc())
    rows = [dict(r) for r in (await conn.execute(query.limit(clamp_limit(limit)))).mappings().all()]
    return rows[::-1] if backwards else rows
