"""One turn at a time per agent (contract R8). Within a process: a FIFO lock per agent, so concurrent
sends wait their turn in arrival order without any network round trip. Cluster-wide leases (Redis,
PostgreSQL) wrap this one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from recalld.errors import Conflict
from recalld.obs.metrics import LEASE_TIMEOUTS


class LocalLeases:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def queued(self, agent_id: str) -> int:
        """Turns holding or waiting for this agent's lease in this process."""
        return self._users.get(agent_id, 0)

    def total_queued(self) -> int:
        return sum(self._users.values())

    @asynccontextmanager
    async def hold(self, agent_id: str, wait_s: float) -> AsyncIterator[None]:
        """Hold the agent's lease; waiters queue in arrival order (asyncio.Lock is FIFO) for up to wait_s."""
        lock = self._locks.setdefault(agent_id, asyncio.Lock())
        self._users[agent_id] = self._users.get(agent_id, 0) + 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), timeout=wait_s)
            except TimeoutError:
                LEASE_TIMEOUTS.inc()
                raise Conflict(
                    f"Agent {agent_id} is busy with another turn; waited {wait_s:g} s for it to finish. Retry later."
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[agent_id] -= 1
            if self._users[agent_id] == 0:
                del self._users[agent_id]
                if not lock.locked():
                    self._locks.pop(agent_id, None)
