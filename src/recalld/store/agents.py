"""Agent rows and their tags."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.paging import page
from recalld.store.schema import agent_tags, agents

# Statements of every turn are built once, with bind parameters: building and cache-keying an expression
# costs more than running it.
_BY_ID = sa.select(agents).where(agents.c.organization_id == sa.bindparam("org_id"),
                                 agents.c.id == sa.bindparam("agent_id"))
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update()
# SET takes the columns named by the parameters; the WHERE parameters have names no column has.
_UPDATE = agents.update().where(agents.c.organization_id == sa.bindparam("where_org_id"),
                                agents.c.id == sa.bindparam("where_agent_id"))
UPDATE_IF_LAST_SEQ = _UPDATE.where(agents.c.last_seq == sa.bindparam("where_last_seq"))


async def get(conn: AsyncConnection, org_id: str, agent_id: str, *, for_update: bool = False) -> dict | None:
    query = _BY_ID_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _BY_ID
    row = (await conn.execute(query, {"org_id": org_id, "agent_id": agent_id})).mappings().first()
    return dict(row) if row else None


async def exists(conn: AsyncConnection, org_id: str, agent_id: str) -> bool:
    query = sa.select(agents.c.id).where(agents.c.organization_id == org_id, agents.c.id == agent_id)
    return (await conn.execute(query)).first() is not None


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(agents.insert().values(**row))


async def update(conn: AsyncConnection, org_id: str, agent_id: str, values: dict) -> None:
    if values:
        await conn.execute(_UPDATE, {**values, "where_org_id": org_id, "where_agent_id": agent_id})


async def delete(conn: AsyncConnection, org_id: str, agent_id: str) -> bool:
    result = await conn.execute(agents.delete().where(agents.c.organization_id == org_id, agents.c.id == agent_id))
    return result.rowcount > 0


def tag_filter(org_id: str, tags: list[str], match_all: bool):
    """Agents carrying any (or all) of the tags."""
    wanted = sorted(set(tags))
    sub = sa.select(agent_tags.c.agent_id).where(agent_tags.c.organization_id == org_id, agent_tags.c.tag.in_(wanted))
    if match_all:
        sub = sub.group_by(agent_tags.c.agent_id).having(sa.func.count(sa.distinct(agent_tags.c.tag)) == len(wanted))
    return agents.c.id.in_(sub)


SORTS = {
    "created_at": agents.c.created_at,
    "updated_at": agents.c.updated_at,
    # Agents that never ran sort after those that did when newest-first.
    "last_run_completion": sa.func.coalesce(agents.c.last_run_completion, agents.c.created_at),
}


async def list_page(
    conn: AsyncConnection,
    org_id: str,
    *,
    filters: list,
    sort: str,
    before,
    after,
    limit: int,
    ascending: bool,
) -> list[dict]:
    query = sa.select(agents).where(agents.c.organization_id == org_id, *filters)
    return await page(
        conn,
        query,
        agents,
        org_id=org_id,
        sort_expr=SORTS[sort],
        before=before,
        after=after,
        limit=limit,
        ascending=ascending,
    )


async def tags_for(conn: AsyncConnection, org_id: str, agent_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {a: [] for a in agent_ids}
    if not agent_ids:
        return out
    rows = await conn.execute(
        sa.select(agent_tags.c.agent_id, agent_tags.c.tag)
        .where(agent_tags.c.organization_id == org_id, agent_tags.c.agent_id.in_(agent_ids))
        .order_by(agent_tags.c.tag)
    )
    for agent_id, tag in rows:
        out[agent_id].append(tag)
    return out


async def set_tags(conn: AsyncConnection, org_id: str, agent_id: str, tags: list[str]) -> None:
    await conn.execute(
        agent_tags.delete().where(agent_tags.c.organization_id == org_id, agent_tags.c.agent_id == agent_id)
    )
    unique = list(dict.fromkeys(tags))
    if unique:
        await conn.execute(
            agent_tags.insert(), [{"organization_id": org_id, "agent_id": agent_id, "tag": t} for t in unique]
        )
