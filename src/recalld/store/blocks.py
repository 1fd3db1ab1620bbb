"""Blocks and their attachment to agents."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.attached import Attached
from recalld.store.paging import page
from recalld.store.schema import agent_blocks, blocks


async def get(conn: AsyncConnection, org_id: str, block_id: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(blocks).where(blocks.c.organization_id == org_id, blocks.c.id == block_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def get_many(conn: AsyncConnection, org_id: str, block_ids: list[str]) -> dict[str, dict]:
    if not block_ids:
        return {}
    rows = (
        await conn.execute(sa.select(blocks).where(blocks.c.organization_id == org_id, blocks.c.id.in_(set(block_ids))))
    ).mappings()
    return {r["id"]: dict(r) for r in rows}


async def insert(conn: AsyncConnection, rows: list[dict]) -> None:
    if rows:
        await conn.execute(blocks.insert(), rows)


async def update(conn: AsyncConnection, org_id: str, block_id: str, values: dict) -> None:
    await conn.execute(
        blocks.update().where(blocks.c.organization_id == org_id, blocks.c.id == block_id).values(**values)
    )
    if "label" in values:
        await conn.execute(
            agent_blocks.update()
            .where(agent_blocks.c.organization_id == org_id, agent_blocks.c.block_id == block_id)
            .values(label=values["label"])
        )


async def delete(conn: AsyncConnection, org_id: str, block_id: str) -> bool:
    result = await conn.execute(blocks.delete().where(blocks.c.organization_id == org_id, blocks.c.id == block_id))
    return result.rowcount > 0


async def list_page(
    conn: AsyncConnection,
    org_id: str,
    *,
    filters: list,
    before: str | None,
    after: str | None,
    limit: int,
    ascending: bool,
) -> list[dict]:
    query = sa.select(blocks).where(blocks.c.organization_id == org_id, *filters)
    return await page(conn, query, blocks, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending)


def attached_count(org_id: str):
    """A correlated count of the agents a block is attached to, for the connected_to_agents filters."""
    return (
        sa.select(sa.func.count())
        .select_from(agent_blocks)
        .where(agent_blocks.c.organization_id == org_id, agent_blocks.c.block_id == blocks.c.id)
        .scalar_subquery()
    )


_ATTACHED = Attached(blocks, agent_blocks, agent_blocks.c.block_id)
for_agent = _ATTACHED.for_agent  # the agent's blocks in (created_at, id) order
for_agents = _ATTACHED.for_agents
agent_page = _ATTACHED.agent_page


async def agent_ids_of(conn: AsyncConnection, org_id: str, block_id: str) -> list[str]:
    rows = await conn.execute(
        sa.select(agent_blocks.c.agent_id).where(
            agent_blocks.c.organization_id == org_id, agent_blocks.c.block_id == block_id
        )
    )
    return list(rows.scalars())


async def attach(conn: AsyncConnection, org_id: str, agent_id: str, block_id: str, label: str) -> None:
    await conn.execute(
        agent_blocks.insert().values(organization_id=org_id, agent_id=agent_id, block_id=block_id, label=label)
    )


async def detach(conn: AsyncConnection, org_id: str, agent_id: str, block_id: str) -> bool:
    result = await conn.execute(
        agent_blocks.delete().where(
            agent_blocks.c.organization_id == org_id,
            agent_blocks.c.agent_id == agent_id,
            agent_blocks.c.block_id == block_id,
        )
    )
    return result.rowcount > 0


async def detach_all(conn: AsyncConnection, org_id: str, agent_id: str) -> None:
    await conn.execute(
        agent_blocks.delete().where(agent_blocks.c.organization_id == org_id, agent_blocks.c.agent_id == agent_id)
    )


async def labels_of_agent(conn: AsyncConnection, org_id: str, agent_id: str) -> dict[str, str]:
    """label → block id for the agent's blocks."""
    rows = await conn.execute(
        sa.select(agent_blocks.c.label, agent_blocks.c.block_id).where(
            agent_blocks.c.organization_id == org_id, agent_blocks.c.agent_id == agent_id
        )
    )
    return {label: block_id for label, block_id in rows}
