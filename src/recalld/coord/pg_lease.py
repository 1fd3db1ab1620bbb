"""Agent leases in PostgreSQL (when Redis is absent or down): one row per held agent. Each attempt is its
own short transaction — no connection is held while the turn runs."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from recalld.store.router import StoreRouter
from recalld.store.schema import agent_leases


class PgLeaseStore:
    def __init__(self, router: StoreRouter):
        self.router = router

    async def try_acquire(self, org_id: str, agent_id: str, holder: str, token: str, ttl_s: float) -> bool:
        # The database's clock, not this instance's: every instance compares against the same time.
        now = sa.func.now()
        values = {"organization_id": org_id, "agent_id": agent_id, "holder": holder, "token": token,
                  "expires_at": now + timedelta(seconds=ttl_s)}
        stmt = pg_insert(agent_leases).values(**values)
        # Take the row when it is free or its lease has expired; otherwise nothing is returned.
        stmt = stmt.on_conflict_do_update(
            index_elements=[agent_leases.c.organization_id, agent_leases.c.agent_id],
            set_={"holder": holder, "token": token, "expires_at": values["expires_at"]},
            where=agent_leases.c.expires_at < now,
        ).returning(agent_leases.c.token)
        async with self.router.write(org_id) as conn:
            return (await conn.execute(stmt)).scalar_one_or_none() == token

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

