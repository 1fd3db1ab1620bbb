"""Agent leases in Redis: `SET key token NX PX ttl`; renew and release check the token in a script,
so only the holder can extend or drop its lease."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisUnavailable(Exception):
    pass


class RedisLeaseStore:
    def __init__(self, url: str, prefix: str = "recalld:lease:"):
        # Short timeouts: a dead Redis must turn into a fallback quickly, not a stalled turn.
        self.client = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                        health_check_interval=5)
        self.prefix = prefix
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def _key(self, agent_id: str) -> str:
        return self.prefix + agent_id

    async def try_acquire(self, agent_id: str, token: str, ttl_s: float) -> bool:
        try:
            return bool(await self.client.set(self._key(agent_id), token, nx=True, px=int(ttl_s * 1000)))
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            raise RedisUnavailable(str(e)) from e

    async def renew(self, agent_id: str, token: str, ttl_s: float) -> bool:
        try:
            return bool(await self._renew(keys=[self._key(agent_id)], args=[token, int(ttl_s * 1000)]))
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            raise RedisUnavailable(str(e)) from e

    async def release(self, agent_id: str, token: str) -> None:
        try:
            await self._release(keys=[self._key(agent_id)], args=[token])
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
            raise RedisUnavailable(str(e)) from e

    async def close(self) -> None:
        await self.client.aclose()
