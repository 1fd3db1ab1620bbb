"""Agent leases in PostgreSQL (when Redis is absent or down): one row per held agent. Each attempt is its
own short transaction — no connection is held while the turn runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.router import StoreRouter
from recalld.store.schema import agent_leases

# Take the row when it is free or its lease has expired; otherwise nothing is returned. The database's
# clock, not this instance's: every instance compares against the same time.
_insert = pg_insert(agent_leases).values(
    organization_id=sa.bindparam("org_id"),
    agent_id=sa.bindparam("agent_id"),
    holder=sa.bindparam("holder"),
    token=sa.bindparam("token"),
    expires_at=sa.func.now() + sa.bindparam("ttl", type_=sa.Interval),
)
_ACQUIRE = _insert.on_conflict_do_update(
    index_elements=[agent_leases.c.organization_id, agent_leases.c.agent_id],
    set_={"holder": _insert.excluded.holder, "token": _insert.excluded.token,
          "expires_at": _insert.excluded.expires_at},
    where=agent_leases.c.expires_at < sa.func.now(),
).returning(agent_leases.c.token)


class PgLeaseStore:
    def __init__(self, router: StoreRouter):
        self.router = router

    async def try_acquire(
        self, org_id: str, agent_id: str, holder: str, token: str, ttl_s: float,
        then: Callable[[AsyncConnection], Awaitable[Any]] | None = None,
    ) -> tuple[bool, Any]:
        """(granted, what `then` returned). `then` runs in the same transaction when the lease is granted —
        the turn's first reads and writes cost no transaction of their own — and if it fails, the lease is
        not taken either."""
        params = {"org_id": org_id, "agent_id": agent_id, "holder": holder, "token": token,
                  "ttl": timedelta(seconds=ttl_s)}
        async with self.router.write(org_id) as conn:
            granted = (await conn.execute(_ACQUIRE, params)).scalar_one_or_none() == token
            return granted, (await then(conn) if granted and then is not None else None)

    async def renew(self, org_id: str, agent_id: str, token: str, ttl_s: float) -> bool:
        async with self.router.write(org_id) as conn:
            result = await conn.execute(
                agent_leases.update()
                .where(agent_leases.c.organization_id == org_id, agent_leases.c.agent_id == agent_id,
                       agent_leases.c.token == token)
                .values(expires_at=sa.func.now() + timedelta(seconds=ttl_s))
            )
            return result.rowcount == 1

    async def release(self, org_id: str, agent_id: str, token: str) -> None:
        async with self.router.write(org_id) as conn:
            await conn.execute(
                agent_leases.delete().where(agent_leases.c.organization_id == org_id,
                                            agent_leases.c.agent_id == agent_id, agent_leases.c.token == token)
            )

