"""The limit stores on their own (coord/rate_limit.py, coord/turn_slots.py): token buckets and turn slots in
this process and in the shared Redis, as two instances see them, and what a crashed instance leaves behind."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from recalld.coord.limit_redis import LimitRedis
from recalld.coord.rate_limit import LocalBuckets, RateLimiter
from recalld.coord.turn_slots import RateRefused, TurnRefused, TurnSlots
from tests.servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


def org() -> str:
    return f"org-{uuid.uuid4()}"


@pytest.fixture
async def two_instances():
    """Two instances' limit stores on the shared Redis, under a prefix of this test alone."""
    prefix = f"recalld:test-limit:{uuid.uuid4().hex[:8]}:"
    redis = [LimitRedis(REDIS_URL, prefix=prefix), LimitRedis(REDIS_URL, prefix=prefix)]
    yield redis
    keys = [k async for k in redis[0].client.scan_iter(match=prefix + "*")]
    if keys:
        await redis[0].client.delete(*keys)
    for r in redis:
        await r.close()


def test_local_bucket_gives_the_burst_then_one_token_per_interval():
    buckets = LocalBuckets()
    org_id = org()
    assert [buckets.take(org_id, 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take(org_id, 2.0, 3)
    assert 0.45 < wait <= 0.5  # one token every 0.5 s
    assert buckets.take(org(), 2.0, 3) == 0.0  # another organization has its own bucket


async def test_redis_bucket_is_shared_by_instances(two_instances):
    first, second = RateLimiter(two_instances[0]), RateLimiter(two_instances[1])
    org_id = org()
    waits = [await limiter.take(org_id, 0.01, 4) for limiter in (first, second, first, second, first, second)]
    assert waits[:4] == [0.0] * 4 and all(w > 90 for w in waits[4:])
    assert first.backend == "redis"


async def test_without_redis_the_limits_are_kept_per_instance():
    dead = LimitRedis(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RateLimiter(dead)
    org_id = org()
    assert [await limiter.take(org_id, 0.01, 2) for _ in range(3)][2] > 0  # never no limit
    assert limiter.backend == "local"
    slots = TurnSlots(dead, ttl_s=30, local_rate=limiter.local)
    slot = await slots.admit(org_id, 1, 0)
    assert slot.backend == "local"
    with pytest.raises(TurnRefused):
        await slots.admit(org_id, 1, 0)
    await slots.release(slot)
    await slots.release(await slots.admit(org_id, 1, 0))
    await dead.close()


async def test_turn_slots_bound_in_flight_and_running_turns_across_instances(two_instances):
    buckets = LocalBuckets()
    first, second = (TurnSlots(r, ttl_s=30, local_rate=buckets) for r in two_instances)
    org_id = org()
    running = await first.admit(org_id, 1, 1, try_run=True)
    waiting = await second.admit(org_id, 1, 1, try_run=True)
    assert running.running and not waiting.running
    with pytest.raises(TurnRefused) as refused:
        await second.admit(org_id, 1, 1)
    assert refused.value.limit == "queued_turns"
    with pytest.raises(TurnRefused) as refused:
        await second.run(waiting, 1, wait_s=0.2)
    assert refused.value.limit == "concurrent_turns"
    await first.release(running)
    await second.run(waiting, 1, wait_s=1)
    assert waiting.running
    await second.release(waiting)
    for slots in (first, second):
        slots.close()


async def test_a_crashed_instances_slots_expire(two_instances):
    crashed = TurnSlots(two_instances[0], ttl_s=0.3, local_rate=LocalBuckets())
    alive = TurnSlots(two_instances[1], ttl_s=0.3, local_rate=LocalBuckets())
    org_id = org()
    await crashed.admit(org_id, 1, 0, try_run=True)
    crashed.close()  # no renewals, no release: the instance is gone
    with pytest.raises(TurnRefused):
        await alive.admit(org_id, 1, 0)
    await asyncio.sleep(0.4)
    await alive.release(await alive.admit(org_id, 1, 0, try_run=True))
    alive.close()


async def test_a_send_takes_its_rate_token_in_the_admission(two_instances):
    slots = TurnSlots(two_instances[0], ttl_s=30, local_rate=LocalBuckets())
    org_id = org()
    await slots.release(await slots.admit(org_id, 5, 5, rate=(0.01, 1)))
    with pytest.raises(RateRefused) as refused:
        await slots.admit(org_id, 5, 5, rate=(0.01, 1))
    assert refused.value.wait_s > 90
    assert slots.inflight_by_org() == {}
    slots.close()
