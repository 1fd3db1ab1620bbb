"""How many tool processes run at once: at most `total` on this instance and `per_org` for one organization;
more calls wait (an organization's own slot first, so a busy one never holds instance slots while it waits),
and beyond `queue_max` waiting calls, or after waiting `wait_s`, a call is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SlotsBusy(Exception):
    """No slot for this tool call: the public reason is the message."""


class _OrgSlots:
    def __init__(self, size: int):
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


class ToolSlots:
    def __init__(self, *, total: int, per_org: int, queue_max: int):
        self.total = asyncio.Semaphore(total)
        self.per_org = per_org
        self.queue_max = queue_max
        self.waiting = 0
        self._orgs: dict[str, _OrgSlots] = {}

    @asynccontextmanager
    async def hold(self, org_id: str, wait_s: float) -> AsyncIterator[None]:
        if self.waiting >= self.queue_max and (self.total.locked() or self._org_locked(org_id)):
            raise SlotsBusy(f"too many tool calls are waiting on this server ({self.waiting}); try again later")
        org = self._orgs.get(org_id)
        if org is None:
            org = self._orgs[org_id] = _OrgSlots(self.per_org)
        org.users += 1
        self.waiting += 1
        held_org = held_total = False
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await org.semaphore.acquire()
                    held_org = True
                    await self.total.acquire()
                    held_total = True
            except TimeoutError:
                raise SlotsBusy(f"no tool slot became free within {wait_s:g} s; try again later") from None
            finally:
                self.waiting -= 1
            yield
        finally:
            if held_total:
                self.total.release()
            if held_org:
                org.semaphore.release()
            org.users -= 1
            if org.users == 0:
                del self._orgs[org_id]

    def _org_locked(self, org_id: str) -> bool:
        org = self._orgs.get(org_id)
        return org is not None and org.semaphore.locked()
