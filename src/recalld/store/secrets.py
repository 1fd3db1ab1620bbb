"""The secrets key check and the rows `recalld secrets rotate` re-encrypts (agent secrets, sandbox variables)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.schema import agents, sandbox_env_vars, secrets_key_checks
from recalld.store.types import utcnow


async def get_check(conn: AsyncConnection, org_id: str) -> str | None:
    query = sa.select(secrets_key_checks.c.token).where(secrets_key_checks.c.organization_id == org_id)
    return (await conn.execute(query)).scalar()


async def insert_check(conn: AsyncConnection, org_id: str, token: str) -> None:
    now = utcnow()
    await conn.execute(
        secrets_key_checks.insert().values(organization_id=org_id, token=token, created_at=now, updated_at=now)
    )


async def replace_check(conn: AsyncConnection, org_id: str, token: str) -> None:
    await conn.execute(
        secrets_key_checks.update()
        .where(secrets_key_checks.c.organization_id == org_id)
        .values(token=token, updated_at=utcnow())
    )


async def agents_with_secrets(
    conn: AsyncConnection, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, str, object]]:
    """(organization_id, agent id, stored secrets) of agents that have any, in key order after `after`."""
    query = sa.select(agents.c.organization_id, agents.c.id, agents.c.secrets).where(agents.c.secrets.is_not(None))
    if after is not None:
        query = query.where(sa.tuple_(agents.c.organization_id, agents.c.id) > sa.tuple_(*after))
    query = query.order_by(agents.c.organization_id, agents.c.id).limit(limit)
    return [tuple(row) for row in (await conn.execute(query)).all()]


async def set_agent_secrets(conn: AsyncConnection, org_id: str, agent_id: str, stored: str | None) -> None:
    await conn.execute(
        agents.update().where(agents.c.organization_id == org_id, agents.c.id == agent_id).values(secrets=stored)
    )


async def agent_secrets_for_update(conn: AsyncConnection, org_id: str, agent_id: str) -> object:
    query = sa.select(agents.c.secrets).where(agents.c.organization_id == org_id, agents.c.id == agent_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).scalar()


async def sandbox_vars_page(conn: AsyncConnection, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
    """(organization_id, id) of sandbox environment variables, in key order after `after`."""
    query = sa.select(sandbox_env_vars.c.organization_id, sandbox_env_vars.c.id)
    if after is not None:
        query = query.where(sa.tuple_(sandbox_env_vars.c.organization_id, sandbox_env_vars.c.id) > sa.tuple_(*after))
    query = query.order_by(sandbox_env_vars.c.organization_id, sandbox_env_vars.c.id).limit(limit)
    return [tuple(row) for row in (await conn.execute(query)).all()]


async def sandbox_var_value_for_update(conn: AsyncConnection, org_id: str, var_id: str) -> str | None:
    table = sandbox_env_vars
    query = sa.select(table.c.value).where(table.c.organization_id == org_id, table.c.id == var_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).scalar()


async def set_sandbox_var_value(conn: AsyncConnection, org_id: str, var_id: str, stored: str) -> None:
    table = sandbox_env_vars
    query = table.update().where(table.c.organization_id == org_id, table.c.id == var_id)
    await conn.execute(query.values(value=stored))
