"""Runs and steps."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.driver_statement import DriverStatement
from recalld.store.paging import page
from recalld.store.schema import runs, steps

ACTIVE = ("created", "running")


async def get(conn: AsyncConnection, org_id: str, run_id: str) -> dict | None:
    row = (await conn.execute(sa.select(runs).where(runs.c.organization_id == org_id, runs.c.id == run_id))).mappings()
    first = row.first()
    return dict(first) if first else None


@functools.lru_cache(maxsize=3)
def _idempotent(by_key: bool, by_otid: bool) -> DriverStatement:
    conditions = []
    if by_key:
        conditions.append(runs.c.idempotency_key == sa.bindparam("key"))
    if by_otid:
        conditions.append(runs.c.input_otid == sa.bindparam("otid"))
    query = sa.select(runs).where(runs.c.organization_id == sa.bindparam("org_id"),
                                  runs.c.agent_id == sa.bindparam("agent_id"), sa.or_(*conditions))
    return DriverStatement(query.limit(1))


async def find_idempotent(
    conn: AsyncConnection, org_id: str, agent_id: str, *, key: str | None, otid: str | None
) -> dict | None:
    """The run an idempotent send names, by Idempotency-Key or by its input's otid."""
    if not key and not otid:
        return None
    rows = await _idempotent(bool(key), bool(otid)).fetch(
        conn, {"org_id": org_id, "agent_id": agent_id, "key": key, "otid": otid}
    )
    return rows[0] if rows else None


# Built once: SET takes the columns named by the parameters; the WHERE parameters have names no column has.
_UPDATE = runs.update().where(runs.c.organization_id == sa.bindparam("where_org_id"),
                              runs.c.id == sa.bindparam("where_run_id"))


_INSERT = runs.insert()
_INSERT_STEP = steps.insert()


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(_INSERT, row)


async def update(conn: AsyncConnection, org_id: str, run_id: str, values: dict) -> None:
    if values:
        await conn.execute(_UPDATE, {**values, "where_org_id": org_id, "where_run_id": run_id})


async def request_cancel(conn: AsyncConnection, org_id: str, run_ids: list[str], now) -> None:  # noqa: ANN001
    await conn.execute(
        runs.update()
        .where(runs.c.organization_id == org_id, runs.c.id.in_(run_ids), runs.c.status.in_(ACTIVE))
        .values(cancel_requested_at=now)
    )


_CANCEL_REQUESTED = sa.select(runs.c.cancel_requested_at).where(
    runs.c.organization_id == sa.bindparam("org_id"), runs.c.id == sa.bindparam("run_id")
)
_TOUCH = (
    runs.update()
    .where(runs.c.organization_id == sa.bindparam("where_org_id"), runs.c.id == sa.bindparam("where_run_id"))
    .returning(runs.c.cancel_requested_at)
)


async def cancel_requested(conn: AsyncConnection, org_id: str, run_id: str) -> bool:
    return (await conn.execute(_CANCEL_REQUESTED, {"org_id": org_id, "run_id": run_id})).scalar() is not None


async def touch(conn: AsyncConnection, org_id: str, run_id: str, now) -> bool:  # noqa: ANN001
    """Mark the run alive (for the reaper); returns whether a cancel was requested meanwhile."""
    result = await conn.execute(_TOUCH, {"updated_at": now, "where_org_id": org_id, "where_run_id": run_id})
    return result.scalar() is not None


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
    await conn.execute(_INSERT_STEP, row)


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
