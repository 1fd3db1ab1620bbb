"""API key revocations pushed to every instance through Redis pub/sub (R21: refused within 1 s).

`recalld keys revoke` publishes on CHANNEL; every instance follows it and drops its key cache on each message,
and again on every (re)subscription, since messages sent while it was disconnected are lost. While Redis is
unreachable the cache is dropped at every failed attempt to subscribe again (at most 2 s apart), so a revocation
nobody could announce still takes effect within about 2 s; without Redis configured, a cached key lives at most
RECALLD_KEY_CACHE_TTL_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

CHANNEL = "recalld:api-keys:revoked"
_RETRY_S = (0.1, 0.5, 1.0, 2.0)
_REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


async def announce(redis_url: str, key_id: str) -> int:
    """Tell every instance that a key was revoked; returns how many instances were listening."""
    client = aioredis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return await client.publish(CHANNEL, key_id)
    finally:
        await client.aclose()


class RevocationFeed:
    """A background task that calls `drop_all` on every revocation and on every (re)subscription."""

    def __init__(self, redis_url: str, drop_all: Callable[[], None]):
        self.redis_url = redis_url
        self.drop_all = drop_all
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self, timeout_s: float = 2.0) -> RevocationFeed:
        """Start following; waits briefly for the first subscription (a Redis that is down does not block start)."""
        self._task = asyncio.create_task(self._follow(), name="recalld-key-revocations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), timeout_s)
        return self

    async def _follow(self) -> None:
        failures = 0
        while True:
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=1.0, health_check_interval=5)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        failures = 0
                        self.subscribed.set()
                    # A revocation, or a fresh subscription after a gap in which one may have been missed.
                    self.drop_all()
            except asyncio.CancelledError:
                raise
            except _REDIS_DOWN as e:
                self.subscribed.clear()
                self.drop_all()
                delay = _RETRY_S[min(failures, len(_RETRY_S) - 1)]
                if failures == 0:
                    log.warning("key revocation feed lost Redis (%s); retrying, keys cached at most the TTL", e)
                failures += 1
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
