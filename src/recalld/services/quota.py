"""Storage limits per organization (R22): stored passages and storage size, checked before a write.

Measuring is kept cheap: an organization's passage count and stored characters (store/org_limits.py) are
measured on its first write after start-up, then re-measured in the background at most every
storage_measure_s; in between, each instance adds what it accepted itself. So a check costs a dict lookup,
and the figure an instance checks against can lag other instances' writes by one measurement interval (an
organization can overshoot by what the whole cluster accepts in that time; it is then refused).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from recalld.errors import InvalidInput
from recalld.obs import limit_metrics
from recalld.services.limits import LimitBook
from recalld.settings import Settings
from recalld.store import org_limits as limits_store
from recalld.store.router import StoreRouter

log = logging.getLogger(__name__)

MB = 1024 * 1024
FIRST_MEASURE_WAIT_S = 1.0


@dataclass
class Usage:
    measured_at: float
    passages: int
    stored_bytes: int


class StorageQuota:
    def __init__(self, router: StoreRouter, book: LimitBook, settings: Settings):
        self.router = router
        self.book = book
        self.settings = settings
        self._usage: dict[str, Usage] = {}
        self._measuring: dict[str, asyncio.Task] = {}

    async def check(self, org_id: str, *, add_passages: int = 0, add_bytes: int = 0) -> None:
        """400 naming the limit when the write would take the organization over it; else count it as stored."""
        if add_passages <= 0 and add_bytes <= 0:
            return
        limits = self.book.for_org(org_id)
        usage = await self._current(org_id)
        if add_passages > 0 and usage.passages + add_passages > limits.max_passages:
            limit_metrics.rejected(org_id, "max_passages")
            raise InvalidInput(
                f"Storage limit reached: this organization stores {usage.passages} passages and its limit "
                f"(max_passages) is {limits.max_passages}; nothing was stored."
            )
        if add_bytes > 0 and usage.stored_bytes + add_bytes > limits.max_storage_mb * MB:
            limit_metrics.rejected(org_id, "max_storage_mb")
            raise InvalidInput(
                f"Storage limit reached: this organization stores {usage.stored_bytes / MB:.1f} MB and this "
                f"write adds {add_bytes / MB:.2f} MB; its limit (max_storage_mb) is {limits.max_storage_mb} MB; "
                "nothing was stored."
            )
        usage.passages += max(0, add_passages)
        usage.stored_bytes += max(0, add_bytes)

    async def _current(self, org_id: str) -> Usage:
        usage = self._usage.get(org_id)
        if usage is None:
            # The first write of an organization here waits for its measurement, but not for long: a large
            # organization's is finished in the background while its writes go on.
            task = self._measuring.get(org_id) or self._start_measuring(org_id)
            try:
                await asyncio.wait_for(asyncio.shield(task), FIRST_MEASURE_WAIT_S)
            except TimeoutError:
                pass
            usage = self._usage.setdefault(org_id, Usage(0.0, 0, 0))
        elif time.monotonic() - usage.measured_at > self.settings.storage_measure_s and org_id not in self._measuring:
            self._start_measuring(org_id)
        return usage

    def _start_measuring(self, org_id: str) -> asyncio.Task:
        task = asyncio.create_task(self._remeasure(org_id))
        self._measuring[org_id] = task
        task.add_done_callback(lambda _: self._measuring.pop(org_id, None))
        return task

    async def _measure(self, org_id: str) -> Usage:
        async with self.router.read(org_id) as conn:
            passages = await limits_store.passage_count(conn, org_id)
            stored = await limits_store.stored_bytes(conn, org_id)
        return Usage(time.monotonic(), passages, stored)

    async def _remeasure(self, org_id: str) -> None:
        try:
            measured = await self._measure(org_id)
            if (previous := self._usage.get(org_id)) is not None and previous.measured_at == 0.0:
                # Writes accepted before the first measurement finished may not be in it: keep them counted.
                measured.passages = max(measured.passages, previous.passages)
                measured.stored_bytes = max(measured.stored_bytes, previous.stored_bytes)
            self._usage[org_id] = measured
        except Exception as e:  # noqa: BLE001 - the last measurement stays until the next try
            log.warning("measuring the storage of %s failed: %s", org_id, e)
