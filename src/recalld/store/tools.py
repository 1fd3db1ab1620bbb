"""Tools and their attachment to agents."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.attached import Attached
from recalld.store.paging import page
from recalld.store.schema import agent_tools, tools


async def get(conn: AsyncConnection, org_id: str, tool_id: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(tools).where(tools.c.organization_id == org_id, tools.c.id == tool_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def get_by_name(conn: AsyncConnection, org_id: str, name: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(tools).where(tools.c.organization_id == org_id, tools.c.name == name)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def by_names(conn: AsyncConnection, org_id: str, names: list[str]) -> dict[str, dict]:
    if not names:
        return {}
    rows = (
        await conn.execute(sa.select(tools).where(tools.c.organization_id == org_id, tools.c.name.in_(set(names))))
    ).mappings()
    return {r["name"]: dict(r) for r in rows}


async def by_ids(conn: AsyncConnection, org_id: str, tool_ids: list[str]) -> dict[str, dict]:
    if not tool_ids:
        return {}
    rows = (
        await conn.execute(sa.select(tools).where(tools.c.organization_id == org_id, tools.c.id.in_(set(tool_ids))))
    ).mappings()
    return {r["id"]: dict(r) for r in rows}


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(tools.insert().values(**row))


async def update(conn: AsyncConnection, org_id: str, tool_id: str, values: dict) -> None:
    await conn.execute(tools.update().where(tools.c.organization_id == org_id, tools.c.id == tool_id).values(**values))


async def delete(conn: AsyncConnection, org_id: str, tool_id: str) -> bool:
    result = await conn.execute(tools.delete().where(tools.c.organization_id == org_id, tools.c.id == tool_id))
    return result.rowcount > 0


async def list_page(
    conn: AsyncConnection, org_id: str, *, filters: list, before, after, limit: int, ascending: bool
) -> list[dict]:
    query = sa.select(tools).where(tools.c.organization_id == org_id, *filters)
    return await page(conn, query, tools, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending)


_ATTACHED = Attached(tools, agent_tools, agent_tools.c.tool_id)
for_agent = _ATTACHED.for_agent  # the agent's tools in (created_at, id) order
for_agents = _ATTACHED.for_agents
agent_page = _ATTACHED.agent_page


async def attached_ids(conn: AsyncConnection, org_id: str, agent_id: str) -> set[str]:
    rows = await conn.execute(
        sa.select(agent_tools.c.tool_id).where(
            agent_tools.c.organization_id == org_id, agent_tools.c.agent_id == agent_id
        )
    )
    return set(rows.scalars())


async def attach_many(conn: AsyncConnection, org_id: str, agent_id: str, tool_ids: list[str]) -> None:
    if tool_ids:
        await conn.execute(
            agent_tools.insert(),
            [{"organization_id": org_id, "agent_id": agent_id, "tool_id": t} for t in dict.fromkeys(tool_ids)],
        )


async def detach(conn: AsyncConnection, org_id: str, agent_id: str, tool_id: str) -> bool:
    result = await conn.execute(
        agent_tools.delete().where(
            agent_tools.c.organization_id == org_id,
            agent_tools.c.agent_id == agent_id,
            agent_tools.c.tool_id == tool_id,
        )
    )
    return result.rowcount > 0


async def detach_all(conn: AsyncConnection, org_id: str, agent_id: str) -> None:
    await conn.execute(
        agent_tools.delete().where(agent_tools.c.organization_id == org_id, agent_tools.c.agent_id == agent_id)
    )
