"""Requests per second with a burst, per organization: token buckets (R22).

With Redis, one bucket per organization lives in Redis and a request costs one round trip: a Lua script
refills the bucket from Redis's own clock, takes a token and says how long until the next one. We use a
script rather than a limiter library because the libraries' async Redis backends offer fixed or sliding
windows, not a token bucket with a separate burst, and would add a second client next to the one the
leases use. Without Redis, or while it is down, the same bucket is kept in this process (limits per
instance, never none).
"""

from __future__ import annotations

import time

from recalld.coord.limit_redis import REDIS_ERRORS, LimitRedis

# Returns the seconds to wait before a token is free: "0" when one was taken. A float as a string, since Redis
# turns Lua numbers into integers. Buckets expire once they would be full again, so idle organizations cost
# nothing.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 't', 'v')
local last = tonumber(state[1]) or now
local tokens = tonumber(state[2]) or burst
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(now), 'v', tostring(tokens))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class LocalBuckets:
    """Token buckets in this process."""

    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # org -> (last refill, tokens)

    def take(self, org_id: str, rate: float, burst: int) -> float:
        now = time.monotonic()
        last, tokens = self._buckets.get(org_id, (now, float(burst)))
        tokens = min(float(burst), tokens + (now - last) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        if org_id not in self._buckets and len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets.clear()  # a bucket left out is full again: forgetting them errs on the caller's side
        self._buckets[org_id] = (now, tokens)
        return wait


class RateLimiter:
    def __init__(self, redis: LimitRedis | None):
        self.redis = redis
        self.local = LocalBuckets()
        self._take = redis.script(_TAKE) if redis is not None else None

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None and not self.redis.down else "local"

    async def take(self, org_id: str, rate: float, burst: int) -> float:
        """Take one request's token; 0 when granted, else the seconds until one is free."""
        if self.redis is not None and self.redis.usable():
            try:
                wait = float(await self._take(keys=[self.redis.key("rate", org_id)], args=[rate, burst]))
            except REDIS_ERRORS as e:
                self.redis.failed(e)
            else:
                self.redis.succeeded()
                return wait
        return self.local.take(org_id, rate, burst)
