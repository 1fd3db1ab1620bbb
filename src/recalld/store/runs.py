"""Runs and steps."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.paging import page
from recalld.store.schema import runs, steps

ACTIVE = ("created", "running")


async def get(conn: AsyncConnection, org_id: str, run_id: str) -> dict | None:
    row = (await conn.execute(sa.select(runs).where(runs.c.organization_id == org_id, runs.c.id == run_id))).mappings()
    first = row.first()
    return dict(first) if first else None


async def find_idempotent(
    conn: AsyncConnection, org_id: str, agent_id: str, *, key: str | None, otid: str | None
) -> dict | None:
    """The run an idempotent send names, by Idempotency-Key or by its input's otid."""
    conditions = []
    if key:
        conditions.append(runs.c.idempotency_key == key)
    if otid:
        conditions.append(runs.c.input_otid == otid)
    if not conditions:
        return None
    query = sa.select(runs).where(runs.c.organization_id == org_id, runs.c.agent_id == agent_id, sa.or_(*conditions))
    row = (await conn.execute(query.limit(1))).mappings().first()
    return dict(row) if row else None


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(runs.insert().values(**row))


async def update(conn: AsyncConnection, org_id: str, run_id: str, values: dict) -> None:
    await conn.execute(runs.update().where(runs.c.organization_id == org_id, runs.c.id == run_id).values(**values))


async def active_for_agent(conn: AsyncConnection, org_id: str, agent_id: str) -> list[dict]:
    rows = await conn.execute(
        sa.select(runs).where(runs.c.organization_id == org_id, runs.c.agent_id == agent_id, runs.c.status.in_(ACTIVE))
    )
    return [dict(r) for r in rows.mappings()]


async def list_page(
    conn: AsyncConnection, org_id: str, *, filters: list, before, after, limit: int, ascending: bool
) -> list[dict]:
    query = sa.select(runs).where(runs.c.organization_id == org_id, *filters)
    return await page(conn, query, runs, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending)


async def insert_step(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(steps.insert().values(**row))


async def get_step(conn: AsyncConnection, org_id: str, step_id: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(steps).where(steps.c.organization_id == org_id, steps.c.id == step_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def steps_page(
    conn: AsyncConnection, org_id: str, *, filters: list, before, after, limit: int, ascending: bool
) -> list[dict]:
    query = sa.select(steps).where(steps.c.organization_id == org_id, *filters)
    return await page(conn, query, steps, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending)


async def step_count(conn: AsyncConnection, org_id: str, run_id: str) -> int:
    query = sa.select(sa.func.count()).where(steps.c.organization_id == org_id, steps.c.run_id == run_id)
    return int((await conn.execute(query)).scalar_one())
