"""Failing runs whose instance died: a run's row is touched while its lease is renewed, so a run that has
gone quiet for two lease lifetimes has no living holder (docs/ARCHITECTURE.md, failure paths)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from recalld import ids
from recalld.settings import Settings
from recalld.store.router import StoreRouter
from recalld.store.schema import runs
from recalld.store.types import utcnow

log = logging.getLogger(__name__)


class RunReaper:
    def __init__(self, router: StoreRouter, settings: Settings):
        self.router = router
        self.settings = settings

    async def reap_once(self) -> int:
        """Mark abandoned runs failed; returns how many."""
        now = utcnow()
        quiet = timedelta(seconds=2 * self.settings.lease_ttl_s)
        # An async run may wait for its turn up to lease_wait before it starts running.
        queued = quiet + timedelta(seconds=self.settings.lease_wait_s)
        stale = (
            ((runs.c.status == "running") & (runs.c.updated_at < now - quiet))
            | ((runs.c.status == "created") & (runs.c.updated_at < now - queued))
        )
        # One database holds every organization today; with shards this loops over them (store/router.py).
        async with self.router.write(ids.DEFAULT_ORG_ID) as conn:
            result = await conn.execute(
                runs.update().where(stale).values(status="failed", stop_reason="error", completed_at=now,
                                                  updated_at=now)
            )
        if result.rowcount:
            log.warning("reaped %d run(s) whose instance stopped renewing their lease", result.rowcount)
        return result.rowcount

    async def run_forever(self) -> None:
        interval = max(1.0, self.settings.lease_ttl_s / 2)
        while True:
            try:
                await self.reap_once()
            except Exception as e:  # noqa: BLE001 - try again next round
                log.warning("run reaper failed: %s", e)
            await asyncio.sleep(interval)
