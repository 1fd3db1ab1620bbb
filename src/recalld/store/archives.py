"""Archives (collections of passages) and which agents they are attached to."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.paging import page
from recalld.store.schema import archive_agents, archives


async def get(conn: AsyncConnection, org_id: str, archive_id: str) -> dict | None:
    query = sa.select(archives).where(archives.c.organization_id == org_id, archives.c.id == archive_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(archives.insert().values(**row))


async def update(conn: AsyncConnection, org_id: str, archive_id: str, values: dict) -> None:
    await conn.execute(
        archives.update().where(archives.c.organization_id == org_id, archives.c.id == archive_id).values(**values)
    )


async def delete(conn: AsyncConnection, org_id: str, archive_id: str) -> bool:
    result = await conn.execute(
        archives.delete().where(archives.c.organization_id == org_id, archives.c.id == archive_id)
    )
    return result.rowcount > 0


async def default_for(conn: AsyncConnection, org_id: str, agent_id: str) -> dict | None:
    """The agent's own archive, if it has one yet."""
    query = sa.select(archives).where(archives.c.organization_id == org_id, archives.c.owner_agent_id == agent_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def ensure_default(conn: AsyncConnection, row: dict) -> str:
    """Create the agent's own archive unless it exists (two racing first inserts make one); its id."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(
        dialect_insert(archives)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["organization_id", "owner_agent_id"])
    )
    archive = await default_for(conn, row["organization_id"], row["owner_agent_id"])
    assert archive is not None
    await attach(conn, row["organization_id"], archive["id"], row["owner_agent_id"])
    return archive["id"]


async def attach(conn: AsyncConnection, org_id: str, archive_id: str, agent_id: str) -> None:
    """Attach an archive to an agent; attaching twice is a no-op."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(
        dialect_insert(archive_agents)
        .values(organization_id=org_id, archive_id=archive_id, agent_id=agent_id)
        .on_conflict_do_nothing()
    )


async def detach(conn: AsyncConnection, org_id: str, archive_id: str, agent_id: str) -> bool:
    result = await conn.execute(
        archive_agents.delete().where(
            archive_agents.c.organization_id == org_id,
            archive_agents.c.archive_id == archive_id,
            archive_agents.c.agent_id == agent_id,
        )
    )
    return result.rowcount > 0


def ids_of_agent(org_id: str, agent_id: str) -> sa.Select:
    """The ids of the archives an agent searches, as a subquery."""
    return sa.select(archive_agents.c.archive_id).where(
        archive_agents.c.organization_id == org_id, archive_agents.c.agent_id == agent_id
    )


async def list_page(
    conn: AsyncConnection,
    org_id: str,
    *,
    name: str | None,
    agent_id: str | None,
    before: str | None,
    after: str | None,
    limit: int,
    ascending: bool,
) -> list[dict]:
    query = sa.select(archives).where(archives.c.organization_id == org_id)
    if name is not None:
        query = query.where(archives.c.name == name)
    if agent_id is not None:
        query = query.where(archives.c.id.in_(ids_of_agent(org_id, agent_id)))
    return await page(
        conn, query, archives, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending
    )
