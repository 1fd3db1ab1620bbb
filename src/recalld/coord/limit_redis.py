"""The Redis connection the organization limits share (rate buckets, turn slots, tool seconds), and whether
to use it now. A failed call marks Redis down for RETRY_S: meanwhile every limit is kept per instance (never
no limit), and requests do not each wait for a timeout; the first call after that tries Redis again."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

RETRY_S = 1.0
REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class LimitRedis:
    def __init__(self, url: str, prefix: str = "recalld:limit:"):
        # Short timeouts: a limit check must fall back quickly, not stall the request it guards.
        self.client = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self._down_until = 0.0
        self.down = False

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def script(self, source: str) -> Any:
        return self.client.register_script(source)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def failed(self, error: Exception) -> None:
        if not self.down:
            log.warning("redis unavailable for organization limits (%s); limits are per instance until it "
                        "returns", error)
        self.down = True
        self._down_until = time.monotonic() + RETRY_S

    def succeeded(self) -> None:
        if self.down:
            log.info("redis is back: organization limits are cluster-wide again")
        self.down = False

    async def close(self) -> None:
        await self.client.aclose()
