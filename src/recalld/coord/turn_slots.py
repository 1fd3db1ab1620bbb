"""Concurrent and queued turns per organization (R22), cluster-wide with Redis.

A turn is admitted when its organization has fewer than concurrent_turns + queued_turns turns in flight
(waiting or running); it then waits for its agent's lease (counted as queued) and, holding it, for a running
slot (fewer than concurrent_turns running). Either bound reached is a 429. So the turns an organization can
put in flight — and with them `recalld_turns_queued`, the autoscaling signal — are bounded by its limits.

With Redis a slot is a member of a sorted set scored by its expiry, renewed while the turn lives, so a crashed
instance's slots free themselves. Without Redis, or while it is down, counts are kept in this process; a slot
is released where it was taken.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass

from recalld.coord.limit_redis import REDIS_ERRORS, LimitRedis
from recalld.coord.rate_limit import LocalBuckets

log = logging.getLogger(__name__)

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1

# One round trip for a send: its request's token (the rate bucket, as coord/rate_limit.py's script), its
# admission and, when asked and a running slot is free, that slot too.
# KEYS: in-flight set, running set, rate bucket. ARGV: token, in-flight bound, ttl ms, concurrent bound,
# try to run (0|1), rate per s (0: no token to take), burst.
# Returns {-1, seconds to wait} (rate), {0, in flight, running} (refused), {1|2, …} (admitted; 2: running).
_ADMIT = """
local rate = tonumber(ARGV[6])
local clock = redis.call('TIME')
if rate > 0 then
  local burst = tonumber(ARGV[7])
  local t = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local state = redis.call('HMGET', KEYS[3], 't', 'v')
  local last = tonumber(state[1]) or t
  local tokens = tonumber(state[2]) or burst
  tokens = math.min(burst, tokens + math.max(0, t - last) * rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', KEYS[3], 't', tostring(t), 'v', tostring(tokens))
  redis.call('PEXPIRE', KEYS[3], math.ceil((burst - tokens) / rate * 1000) + 1000)
  if wait > 0 then
    return {-1, tostring(wait)}
  end
end
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[1])
local running = redis.call('ZCARD', KEYS[2])
if inflight >= tonumber(ARGV[2]) then
  return {0, inflight, running}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[5] == '1' and running < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {2, inflight + 1, running + 1}
end
return {1, inflight + 1, running}
"""
# KEYS: running set. ARGV: token, concurrent bound, ttl ms. Returns 1 when the turn may run.
_RUN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: in-flight set, running set. ARGV: token, ttl ms. Pushes the token's expiry on where it is a member.
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i = 1, 2 do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then
    redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
"""


class RateRefused(Exception):
    """The send's request is over its organization's rate; wait_s until a token is free."""

    def __init__(self, wait_s: float):
        super().__init__(f"over the request rate; retry in {wait_s:.2f} s")
        self.wait_s = wait_s


class TurnRefused(Exception):
    """Over the organization's turn limits; the message names them."""

    def __init__(self, detail: str, limit: str):
        super().__init__(detail)
        self.detail = detail
        self.limit = limit


@dataclass(eq=False)
class Slot:
    org_id: str
    token: str
    backend: str  # "redis" | "local"
    running: bool = False
    released: bool = False


class TurnSlots:
    def __init__(self, redis: LimitRedis | None, ttl_s: float, local_rate: LocalBuckets):
        self.redis = redis
        self.local_rate = local_rate
        self.ttl_ms = int(ttl_s * 1000)
        self.inflight: Counter[str] = Counter()  # local slots by organization
        self.running: Counter[str] = Counter()
        self._held: set[Slot] = set()  # Redis slots of this instance, renewed together
        self._renewer: asyncio.Task | None = None
        if redis is not None:
            self._admit = redis.script(_ADMIT)
            self._run = redis.script(_RUN)
            self._renew = redis.script(_RENEW)

    def _keys(self, org_id: str) -> list[str]:
        return [self.redis.key("turns", org_id, "inflight"), self.redis.key("turns", org_id, "running")]

    def inflight_by_org(self) -> dict[str, int]:
        """Turns in flight here, by organization (Redis slots included)."""
        counts = Counter(self.inflight)
        for slot in self._held:
            counts[slot.org_id] += 1
        return dict(counts)

    async def admit(self, org_id: str, concurrent: int, queued: int, *, rate: tuple[float, int] | None = None,
                    try_run: bool = False) -> Slot:
        """A slot for one turn, or TurnRefused when the organization has concurrent + queued turns in flight.
        With `rate` (per second, burst) the send's request token is taken first (RateRefused without one); with
        `try_run`, a free running slot is taken at once (in the same Redis round trip)."""
        bound = concurrent + queued
        token = secrets.token_hex(8)
        if self.redis is not None and self.redis.usable():
            per_s, burst = rate or (0, 0)
            try:
                answer = await self._admit(
                    keys=[*self._keys(org_id), self.redis.key("rate", org_id)],
                    args=[token, bound, self.ttl_ms, concurrent, int(try_run), per_s, burst],
                )
            except REDIS_ERRORS as e:
                self.redis.failed(e)
            else:
                self.redis.succeeded()
                if int(answer[0]) == -1:
                    raise RateRefused(float(answer[1]))
                if int(answer[0]) == 0:
                    raise _refusal(int(answer[1]), int(answer[2]), concurrent, queued)
                slot = Slot(org_id, token, "redis", running=int(answer[0]) == 2)
                self._held.add(slot)
                self._ensure_renewer()
                return slot
        if rate is not None and (wait_s := self.local_rate.take(org_id, *rate)) > 0:
            raise RateRefused(wait_s)
        if self.inflight[org_id] >= bound:
            raise _refusal(self.inflight[org_id], self.running[org_id], concurrent, queued)
        self.inflight[org_id] += 1
        return Slot(org_id, token, "local")

    async def run(self, slot: Slot, concurrent: int, wait_s: float) -> None:
        """Wait (holding the agent) until fewer than `concurrent` of the organization's turns run; TurnRefused
        after wait_s."""
        deadline = time.monotonic() + wait_s
        delay = POLL_MIN_S
        while not (slot.running or await self._try_run(slot, concurrent)):
            if time.monotonic() + delay > deadline:
                raise TurnRefused(
                    f"Too many turns running for this organization: the concurrent_turns limit is {concurrent}; "
                    f"waited {wait_s:g} s for one to finish. Retry later.",
                    "concurrent_turns",
                )
            await asyncio.sleep(delay)
            delay = min(POLL_MAX_S, delay * 2)

    def try_run_now(self, slot: Slot, concurrent: int) -> bool:
        """A running slot only if one can be had without I/O (a local slot); else False, and run() decides."""
        return slot.running or (slot.backend == "local" and self._try_run_local(slot, concurrent))

    async def _try_run(self, slot: Slot, concurrent: int) -> bool:
        if slot.backend == "redis":
            try:
                granted = await self._run(keys=self._keys(slot.org_id)[1:], args=[slot.token, concurrent,
                                                                                  self.ttl_ms])
            except REDIS_ERRORS as e:
                # The slot stays counted in Redis until it expires; this turn runs under the local bound.
                self.redis.failed(e)
                return self._try_run_local(slot, concurrent)
            self.redis.succeeded()
            slot.running = bool(granted)
            return slot.running
        return self._try_run_local(slot, concurrent)

    def _try_run_local(self, slot: Slot, concurrent: int) -> bool:
        if self.running[slot.org_id] >= concurrent:
            return False
        self.running[slot.org_id] += 1
        slot.running = True
        slot.backend = "local" if slot.backend == "local" else "redis+local"
        return True

    async def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if slot.backend in ("local", "redis+local") and slot.running:
            _decrement(self.running, slot.org_id)
        if slot.backend == "local":
            _decrement(self.inflight, slot.org_id)
            return
        self._held.discard(slot)
        try:
            pipe = self.redis.client.pipeline(transaction=False)
            for key in self._keys(slot.org_id):
                pipe.zrem(key, slot.token)
            await pipe.execute()
        except REDIS_ERRORS as e:  # the slot then expires
            self.redis.failed(e)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl_ms / 3000)
            for slot in list(self._held):
                try:
                    await self._renew(keys=self._keys(slot.org_id), args=[slot.token, self.ttl_ms])
                except REDIS_ERRORS as e:
                    self.redis.failed(e)
                    break

    def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()


def _decrement(counter: Counter[str], org_id: str) -> None:
    counter[org_id] -= 1
    if counter[org_id] <= 0:
        del counter[org_id]


def _refusal(inflight: int, running: int, concurrent: int, queued: int) -> TurnRefused:
    return TurnRefused(
        f"Too many turns in flight for this organization: {running} running (concurrent_turns limit "
        f"{concurrent}) and {max(0, inflight - running)} waiting (queued_turns limit {queued}). Retry later.",
        "queued_turns",
    )
