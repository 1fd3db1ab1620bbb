"""Cluster-wide turn leases (docs/ARCHITECTURE.md principle 2, R8).

A turn first takes its agent's in-process FIFO lock (no network for same-process contention), then the
cluster lease: a Redis key set with NX and a TTL, or — without Redis, or while Redis is down, on
PostgreSQL — a row of the agent_leases table. The lease carries a random token, is renewed while the
turn runs and is released only by its holder. A lease that expires under a paused or partitioned holder
can let a second turn start; the fence at commit (turn_store.commit_step) then refuses the stale writer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.coord.lease import LocalLeases
from recalld.coord.pg_lease import PgLeaseStore
from recalld.coord.redis_lease import RedisLeaseStore, RedisUnavailable
from recalld.errors import Conflict, Unavailable
from recalld.obs.metrics import LEASE_CONTENTION, LEASE_TIMEOUTS, LEASE_WAIT

log = logging.getLogger(__name__)

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1


@dataclass
class Lease:
    agent_id: str
    token: str
    backend: str  # "redis" | "postgres" | "local"
    lost: bool = False  # renewal failed: another turn may hold the agent now
    renewals: int = field(default=0)
    released: bool = False  # dropped by the turn's last commit
    waited: bool = False  # another instance held the agent when this turn arrived
    # What hold()'s first_tx returned, when it ran on the connection that took the lease (the PostgreSQL table).
    opened: bool = False
    opening: Any = None


class TurnLeases:
    def __init__(self, *, ttl_s: float, redis: RedisLeaseStore | None, postgres: PgLeaseStore | None,
                 holder: str):
        self.local = LocalLeases()
        self.ttl_s = ttl_s
        self.redis = redis
        self.postgres = postgres
        self.holder = holder
        self.waits = 0  # turns that had to wait for a lease held elsewhere (contention)
        # When Redis fails, leases it granted moments ago may still be running elsewhere: no PostgreSQL lease
        # is granted until they have expired (one TTL), so the two stores never hold one agent at once.
        self._redis_down_since: float | None = None

    def queued(self, agent_id: str) -> int:
        return self.local.queued(agent_id)

    def total_queued(self) -> int:
        return self.local.total_queued()

    @asynccontextmanager
    async def hold(self, org_id: str, agent_id: str, wait_s: float,
                   on_renew: Callable[[], Awaitable[None]] | None = None,
                   first_tx: Callable[[AsyncConnection], Awaitable[Any]] | None = None) -> AsyncIterator[Lease]:
        """Hold the agent for one turn; waiters queue for up to wait_s, then get 409. When the lease is a
        PostgreSQL row, first_tx runs on the connection that took it, right after (lease.opened, lease.opening);
        with other backends the caller runs its opening itself."""
        started = time.monotonic()
        contended = self.local.queued(agent_id) > 0
        async with self.local.hold(agent_id, wait_s):
            try:
                lease = await self._acquire(org_id, agent_id, started + wait_s, wait_s, first_tx)
            except Conflict:
                LEASE_TIMEOUTS.inc()
                raise
            LEASE_WAIT.observe(time.monotonic() - started)
            if contended or lease.waited:
                LEASE_CONTENTION.inc()
            renewer = asyncio.create_task(self._renew_loop(org_id, lease, on_renew))
            try:
                yield lease
            finally:
                renewer.cancel()
                await asyncio.shield(self._release(org_id, lease))

    async def _acquire(self, org_id: str, agent_id: str, deadline: float, wait_s: float,
                       first_tx: Callable[[AsyncConnection], Awaitable[Any]] | None) -> Lease:
        token = secrets.token_hex(16)
        delay = POLL_MIN_S
        waited = False
        while True:
            backend, opened, opening = await self._try(org_id, agent_id, token, first_tx)
            if backend is not None:
                if waited:
                    self.waits += 1
                return Lease(agent_id, token, backend, waited=waited, opened=opened, opening=opening)
            if time.monotonic() + delay > deadline:
                raise Conflict(f"Agent {agent_id} is busy with another turn; waited {wait_s:g} s for it to finish. "
                               "Retry later.")
            waited = True
            await asyncio.sleep(delay)
            delay = min(POLL_MAX_S, delay * 2)

    async def _try(self, org_id: str, agent_id: str, token: str,
                   first_tx: Callable[[AsyncConnection], Awaitable[Any]] | None) -> tuple[str | None, bool, Any]:
        """One attempt: (the backend that granted the lease or None when the agent is held, whether first_tx
        ran, what it returned)."""
        if self.redis is not None:
            try:
                granted = await self.redis.try_acquire(agent_id, token, self.ttl_s)
                self._redis_down_since = None
                return ("redis" if granted else None), False, None
            except RedisUnavailable as e:
                if self.postgres is None:
                    raise Unavailable("Redis is unavailable and no other lease store is configured") from e
                now = time.monotonic()
                if self._redis_down_since is None:
                    self._redis_down_since = now
                    log.warning("redis unavailable for leases (%s); the PostgreSQL lease table takes over in "
                                "%.0f s", e, self.ttl_s)
                remaining = self.ttl_s - (now - self._redis_down_since)
                if remaining > 0:
                    raise Unavailable(
                        f"Redis is unavailable; turns resume on the PostgreSQL lease table in {remaining:.0f} s",
                        retry_after_s=max(1, int(remaining + 0.999)),
                    ) from e
        if self.postgres is not None:
            granted, opening = await self.postgres.try_acquire(org_id, agent_id, self.holder, token, self.ttl_s,
                                                               then=first_tx)
            return ("postgres" if granted else None), granted and first_tx is not None, opening
        return "local", False, None

    async def _renew_loop(self, org_id: str, lease: Lease,
                          on_renew: Callable[[], Awaitable[None]] | None) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if lease.backend == "redis":
                    ok = await self.redis.renew(lease.agent_id, lease.token, self.ttl_s)
                elif lease.backend == "postgres":
                    ok = await self.postgres.renew(org_id, lease.agent_id, lease.token, self.ttl_s)
                else:
                    ok = True
            except Exception as e:  # noqa: BLE001 - a failed renewal is reported, the fence keeps data safe
                log.warning("renewing the lease of agent %s failed: %s", lease.agent_id, e)
                ok = True  # unknown: keep trying; expiry is the authority
            if not ok:
                lease.lost = True
                log.warning("lost the lease of agent %s (expired and taken over)", lease.agent_id)
                return
            lease.renewals += 1
            if on_renew is not None:
                try:
                    await on_renew()
                except Exception as e:  # noqa: BLE001
                    log.warning("heartbeat of agent %s's run failed: %s", lease.agent_id, e)

    async def _release(self, org_id: str, lease: Lease) -> None:
        if lease.released:
            return
        try:
            if lease.backend == "redis":
                await self.redis.release(lease.agent_id, lease.token)
            elif lease.backend == "postgres":
                await self.postgres.release(org_id, lease.agent_id, lease.token)
        except Exception as e:  # noqa: BLE001 - the lease then simply expires
            log.warning("releasing the lease of agent %s failed (%s); it will expire", lease.agent_id, e)
