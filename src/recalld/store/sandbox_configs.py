"""Sandbox configurations and their environment variables, per organization."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.paging import page
from recalld.store.schema import sandbox_configs as configs
from recalld.store.schema import sandbox_env_vars as env_vars


async def get(conn: AsyncConnection, org_id: str, config_id: str) -> dict | None:
    query = sa.select(configs).where(configs.c.organization_id == org_id, configs.c.id == config_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def get_by_type(conn: AsyncConnection, org_id: str, sandbox_type: str) -> dict | None:
    query = sa.select(configs).where(configs.c.organization_id == org_id, configs.c.type == sandbox_type)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(configs.insert().values(**row))


async def update(conn: AsyncConnection, org_id: str, config_id: str, values: dict) -> None:
    await conn.execute(
        configs.update().where(configs.c.organization_id == org_id, configs.c.id == config_id).values(**values)
    )


async def delete(conn: AsyncConnection, org_id: str, config_id: str) -> bool:
    # Its variables first: SQLite enforces the cascade only with foreign keys switched on.
    await conn.execute(
        env_vars.delete().where(env_vars.c.organization_id == org_id, env_vars.c.sandbox_config_id == config_id)
    )
    result = await conn.execute(
        configs.delete().where(configs.c.organization_id == org_id, configs.c.id == config_id)
    )
    return result.rowcount > 0


async def list_page(
    conn: AsyncConnection, org_id: str, *, sandbox_type: str | None, after: str | None, limit: int
) -> list[dict]:
    query = sa.select(configs).where(configs.c.organization_id == org_id)
    if sandbox_type is not None:
        query = query.where(configs.c.type == sandbox_type)
    return await page(conn, query, configs, org_id=org_id, after=after, limit=limit, ascending=True)


# --- environment variables ----------------------------------------------------------------------------


async def get_var(conn: AsyncConnection, org_id: str, var_id: str) -> dict | None:
    query = sa.select(env_vars).where(env_vars.c.organization_id == org_id, env_vars.c.id == var_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def get_var_by_key(conn: AsyncConnection, org_id: str, config_id: str, key: str) -> dict | None:
    query = sa.select(env_vars).where(
        env_vars.c.organization_id == org_id, env_vars.c.sandbox_config_id == config_id, env_vars.c.key == key
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert_var(conn: AsyncConnection, row: dict) -> None:
    await conn.execute(env_vars.insert().values(**row))


async def update_var(conn: AsyncConnection, org_id: str, var_id: str, values: dict) -> None:
    await conn.execute(
        env_vars.update().where(env_vars.c.organization_id == org_id, env_vars.c.id == var_id).values(**values)
    )


async def delete_var(conn: AsyncConnection, org_id: str, var_id: str) -> bool:
    result = await conn.execute(
        env_vars.delete().where(env_vars.c.organization_id == org_id, env_vars.c.id == var_id)
    )
    return result.rowcount > 0


async def vars_page(conn: AsyncConnection, org_id: str, config_id: str, *, after: str | None, limit: int) -> list[dict]:
    query = sa.select(env_vars).where(env_vars.c.organization_id == org_id, env_vars.c.sandbox_config_id == config_id)
    return await page(conn, query, env_vars, org_id=org_id, after=after, limit=limit, ascending=True)


async def environment(conn: AsyncConnection, org_id: str, sandbox_type: str) -> dict[str, str]:
    """The variables of the organization's configuration of this type, as a tool's environment."""
    query = (
        sa.select(env_vars.c.key, env_vars.c.value)
        .join(
            configs,
            sa.and_(
                configs.c.organization_id == env_vars.c.organization_id,
                configs.c.id == env_vars.c.sandbox_config_id,
            ),
        )
        .where(env_vars.c.organization_id == org_id, configs.c.type == sandbox_type)
    )
    return {key: value for key, value in (await conn.execute(query)).all()}
