"""Agent leases in Redis: a key holding the holder's token, with a TTL. Acquire, renew and release are scripts
that check the token, so only the holder can extend or drop its lease, and acquiring again with the same
token is harmless (an acquire whose reply timed out can be asked again)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

_ACQUIRE = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if held then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
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
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def _key(self, agent_id: str) -> str:
        return self.prefix + agent_id

    async def try_acquire(self, agent_id: str, token: str, ttl_s: float) -> bool:
        args = [token, int(ttl_s * 1000)]
        try:
            try:
                return bool(await self._acquire(keys=[self._key(agent_id)], args=args))
            except redis_errors.TimeoutError:
                # A late reply need not mean Redis is down: this process may have been paused (a VM freeze, a
                # long stall) while the call was out. Ask once more before falling back; with the same token
                # the script grants what the first call may already have granted.
                return bool(await self._acquire(keys=[self._key(agent_id)], args=args))
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
