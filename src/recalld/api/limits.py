"""Wiring of the organization limits (R22) into the app: building them, their background refresh, and the
429 every authenticated route can answer, in the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from recalld.coord.limit_redis import LimitRedis
from recalld.coord.rate_limit import RateLimiter
from recalld.coord.turn_slots import TurnSlots
from recalld.obs import limit_metrics
from recalld.services.admission import Admission
from recalld.services.limits import LimitBook
from recalld.services.quota import StorageQuota
from recalld.services.tool_budget import ToolBudget
from recalld.settings import Settings
from recalld.store.router import StoreRouter

RATE_LIMITED = {
    "description": "Over one of the organization's limits (the detail names it); retry after Retry-After seconds",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


@dataclass
class Limits:
    book: LimitBook
    admission: Admission
    quota: StorageQuota
    tool_budget: ToolBudget
    redis: LimitRedis | None
    refresher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.book.refresh()
        self.refresher = asyncio.create_task(self.book.run_forever())
        limit_metrics.COLLECTOR.inflight = self.admission.slots.inflight_by_org
        limit_metrics.COLLECTOR.backend = lambda: self.admission.rate.backend

    async def stop(self) -> None:
        self.admission.slots.close()
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.redis is not None:
            await self.redis.close()


def build(settings: Settings, router: StoreRouter) -> Limits:
    redis = LimitRedis(settings.redis_url) if settings.redis_url else None
    book = LimitBook(router, settings)
    # A slot outlives a crashed instance by at most this long (it is renewed every third of it).
    rate = RateLimiter(redis)
    slots = TurnSlots(redis, ttl_s=max(30.0, 2 * settings.lease_ttl_s), local_rate=rate.local)
    return Limits(
        book=book,
        admission=Admission(book, rate, slots),
        quota=StorageQuota(router, book, settings),
        tool_budget=ToolBudget(book, redis),
        redis=redis,
    )


def _depends_on(dependant: Dependant, call: object) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def document_rate_limits(router: APIRouter) -> None:
    """Every route that counts against an organization's request rate says it can answer 429 (R17). Runs on
    a module's router before the app includes it."""
    from recalld.api.deps import get_admitted_caller

    for route in router.routes:
        if isinstance(route, APIRoute) and _depends_on(route.dependant, get_admitted_caller):
            route.responses.setdefault(429, RATE_LIMITED)
