"""Per-organization overrides of the limits in settings, and the cheap measurements quotas are checked on."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.schema import blocks, messages, org_limits, organizations, passages, tools
from recalld.store.types import utcnow

LIMIT_COLUMNS = (
    "requests_per_s",
    "burst",
    "concurrent_turns",
    "queued_turns",
    "max_steps",
    "max_passages",
    "max_storage_mb",
    "max_tool_seconds_per_min",
    "tool_network",
    "tool_timeout_s",
    "tool_memory_mb",
    "tool_max_procs",
)


async def all_overrides(conn: AsyncConnection) -> dict[str, dict]:
    """Every organization's overrides (only the columns that are set), by organization id."""
    rows = (await conn.execute(sa.select(org_limits))).mappings()
    return {
        row["organization_id"]: {c: row[c] for c in LIMIT_COLUMNS if row[c] is not None} for row in rows
    }


async def get_overrides(conn: AsyncConnection, org_id: str) -> dict:
    row = (
        (await conn.execute(sa.select(org_limits).where(org_limits.c.organization_id == org_id)))
        .mappings()
        .first()
    )
    return {c: row[c] for c in LIMIT_COLUMNS if row[c] is not None} if row else {}


async def set_overrides(conn: AsyncConnection, org_id: str, values: dict) -> None:
    """Set (a value) or reset (None) the named overrides of one organization."""
    current = await get_overrides(conn, org_id)
    merged = {c: current.get(c) for c in LIMIT_COLUMNS}
    merged.update(values)
    await conn.execute(org_limits.delete().where(org_limits.c.organization_id == org_id))
    await conn.execute(org_limits.insert().values(organization_id=org_id, updated_at=utcnow(), **merged))


async def org_names(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(sa.select(organizations.c.organization_id, organizations.c.name))
    return {org_id: name for org_id, name in rows}


async def passage_count(conn: AsyncConnection, org_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(passages).where(passages.c.organization_id == org_id)
    return int((await conn.execute(query)).scalar_one())


async def stored_bytes(conn: AsyncConnection, org_id: str) -> int:
    """Characters of the large text an organization stores (passages, blocks, tool source, message content
    as stored JSON): a close, cheap proxy for its share of the database (indexes and row overhead excluded)."""
    total = 0
    for column, table in (
        (passages.c.text, passages),
        (blocks.c.value, blocks),
        (tools.c.source_code, tools),
        (sa.cast(messages.c.content, sa.Text), messages),
    ):
        query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(column)), 0)).where(
            table.c.organization_id == org_id
        )
        total += int((await conn.execute(query)).scalar_one())
    return total
