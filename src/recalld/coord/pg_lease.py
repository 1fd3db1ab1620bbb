"""Agent leases in PostgreSQL (when Redis is absent or down): one row per held agent. Each attempt is its
own short statement — no connection is held while the turn runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.driver_statement import DriverStatement
from recalld.store.router import StoreRouter
from recalld.store.schema import agent_leases

log = logging.getLogger(__name__)

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
_ACQUIRE_ON_DRIVER = DriverStatement(_ACQUIRE)  # once per turn: SQLAlchemy's per-execution work skipped


class PgLeaseStore:
    def __init__(self, router: StoreRouter):
        self.router = router

    async def try_acquire(
        self, org_id: str, agent_id: str, holder: str, token: str, ttl_s: float,
        then: Callable[[AsyncConnection], Awaitable[Any]] | None = None,
    ) -> tuple[bool, Any]:
        """(granted, what `then` returned). `then` runs on the same connection right after the lease is
        granted, with no transaction around either (router.statement): the turn's first reads and writes cost
        no BEGIN or COMMIT. If `then` fails, the lease is dropped again."""
        params = {"org_id": org_id, "agent_id": agent_id, "holder": holder, "token": token,
                  "ttl": timedelta(seconds=ttl_s)}
        async with self.router.statement(org_id) as conn:
            rows = await _ACQUIRE_ON_DRIVER.fetch(conn, params)
            granted = bool(rows) and rows[0]["token"] == token
            if not granted or then is None:
                return granted, None
            try:
                return True, await then(conn)
            except BaseException:
                # Shielded: a cancelled request must not leave its agent held until the lease expires.
                await asyncio.shield(self._release_after_failure(org_id, agent_id, token))
                raise

    async def _release_after_failure(self, org_id: str, agent_id: str, token: str) -> None:
        try:
            await self.release(org_id, agent_id, token)
        except Exception as e:  # noqa: BLE001 - the lease then expires; the original failure is what matters
            log.warning("releasing the lease of agent %s after a failed start failed (%s); it will expire",
                        agent_id, e)

    async def renew(self, org_id: str, agent_id: str, token: str, ttl_s: float) -> bool:
        async with self.router.statement(org_id) as conn:
            result = await conn.execute(
                agent_leases.update()
                .where(agent_leases.c.organization_id == org_id, agent_leases.c.agent_id == agent_id,
                       agent_leases.c.token == token)
                .values(expires_at=sa.func.now() + timedelta(seconds=ttl_s))
            )
            return result.rowcount == 1

    async def release(self, org_id: str, agent_id: str, token: str) -> None:
        async with self.router.statement(org_id) as conn:
            await conn.execute(
                agent_leases.delete().where(agent_leases.c.organization_id == org_id,
                                            agent_leases.c.agent_id == agent_id, agent_leases.c.token == token)
            )

