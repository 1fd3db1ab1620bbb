"""Turn leases on the real stores (Redis, the PostgreSQL lease table), the fence, and the run reaper."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from recalld import ids
from recalld.coord.cluster_lease import TurnLeases
from recalld.coord.pg_lease import PgLeaseStore
from recalld.coord.redis_lease import RedisLeaseStore
from recalld.errors import Conflict, Unavailable
from recalld.secrets_box import SecretsBox, generate_key
from recalld.services.caller import Caller
from recalld.services.reaper import RunReaper
from recalld.services.turn_store import FenceViolation, StepCommit, commit_step, load_state
from recalld.settings import Settings
from recalld.store.router import StoreRouter
from recalld.store.schema import runs
from recalld.store.types import utcnow

REDIS_URL = os.environ.get("RECALLD_TEST_REDIS", "redis://127.0.0.1:6379/0")
DEAD_REDIS = "redis://127.0.0.1:1/0"
ORG = ids.DEFAULT_ORG_ID


def redis_store() -> RedisLeaseStore:
    return RedisLeaseStore(REDIS_URL, prefix=f"recalld-test:{uuid.uuid4().hex}:")


def leases(**kw) -> TurnLeases:
    return TurnLeases(ttl_s=kw.pop("ttl_s", 5.0), holder=f"test-{uuid.uuid4().hex[:6]}", **kw)


async def _second_waits_for_first(first: TurnLeases, second: TurnLeases) -> None:
    agent = ids.new_id("agent")
    order: list[str] = []

    async def turn(name: str, which: TurnLeases, hold_s: float) -> None:
        async with which.hold(ORG, agent, wait_s=5):
            order.append(f"{name}-in")
            await asyncio.sleep(hold_s)
            order.append(f"{name}-out")

    task = asyncio.create_task(turn("a", first, 0.3))
    await asyncio.sleep(0.05)
    await turn("b", second, 0)
    await task
    assert order == ["a-in", "a-out", "b-in", "b-out"]


async def test_redis_lease_serializes_two_instances():
    store = redis_store()
    await _second_waits_for_first(leases(redis=store, postgres=None), leases(redis=store, postgres=None))
    await store.close()


async def test_postgres_lease_serializes_two_instances(pg_router):
    store = PgLeaseStore(pg_router)
    await _second_waits_for_first(leases(redis=None, postgres=store), leases(redis=None, postgres=store))


async def test_waiting_past_lease_wait_is_409(pg_router):
    store = PgLeaseStore(pg_router)
    holder, waiter = leases(redis=None, postgres=store), leases(redis=None, postgres=store)
    agent = ids.new_id("agent")
    async with holder.hold(ORG, agent, wait_s=1):
        started = time.monotonic()
        with pytest.raises(Conflict):
            async with waiter.hold(ORG, agent, wait_s=0.3):
                pass
        assert time.monotonic() - started < 2


async def test_only_the_holder_can_release_or_renew():
    store = redis_store()
    agent = ids.new_id("agent")
    assert await store.try_acquire(agent, "token-a", 5)
    assert not await store.try_acquire(agent, "token-b", 5)
    await store.release(agent, "token-b")  # not the holder: nothing happens
    assert not await store.renew(agent, "token-b", 5)
    assert not await store.try_acquire(agent, "token-b", 5)
    await store.release(agent, "token-a")
    assert await store.try_acquire(agent, "token-b", 5)
    await store.close()


async def test_a_redis_acquire_whose_reply_is_late_is_asked_again():
    """A reply later than the socket timeout (Redis stalled, or this process paused) is not yet Redis being
    down: the acquire is asked once more, and acquiring again with the holder's own token grants it."""
    store = redis_store()
    admin = aioredis.from_url(REDIS_URL)
    agent = ids.new_id("agent")
    try:
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # past the store's 1 s socket timeout
        started = time.monotonic()
        assert await store.try_acquire(agent, "token-a", 5)
        assert time.monotonic() - started > 1.0  # the first call timed out; the second was answered
        assert not await store.try_acquire(agent, "token-b", 5)
        assert await store.try_acquire(agent, "token-a", 5)  # the holder again: granted, not refused
        assert 4000 < await admin.pttl(store._key(agent)) <= 5000
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await store.close()


async def test_expired_lease_can_be_taken_over(pg_router):
    store = PgLeaseStore(pg_router)
    agent = ids.new_id("agent")
    assert (await store.try_acquire(ORG, agent, "paused-instance", "token-a", 0.2))[0]  # never renewed
    assert not (await store.try_acquire(ORG, agent, "other", "token-b", 5))[0]
    await asyncio.sleep(0.3)
    assert (await store.try_acquire(ORG, agent, "other", "token-b", 5))[0]
    assert not await store.renew(ORG, agent, "token-a", 5)  # the paused holder learns it lost the lease


async def test_the_opening_follows_the_postgres_lease_without_a_transaction(pg_router):
    """The turn's opening runs on the lease's connection right after it is granted, with no transaction
    around it (no BEGIN/COMMIT round trips); when the opening fails or is cancelled, the lease is dropped."""
    agent = ids.new_id("agent")
    table = TurnLeases(ttl_s=5, redis=None, postgres=PgLeaseStore(pg_router), holder="a")

    async def opening(conn) -> tuple:  # noqa: ANN001
        held = (await conn.execute(sa.text("SELECT token FROM agent_leases WHERE agent_id = :a"),
                                   {"a": agent})).scalar_one_or_none()
        # NULL unless a transaction that wrote something is still open around this statement.
        open_tx = (await conn.execute(sa.text("SELECT txid_current_if_assigned()"))).scalar_one()
        return held, open_tx

    async with table.hold(ORG, agent, wait_s=1, first_tx=opening) as lease:
        assert lease.opened and lease.backend == "postgres"
        assert lease.opening == (lease.token, None)  # the lease row is committed before the opening runs

    async def lease_rows() -> int:
        async with pg_router.read(ORG) as conn:
            return (await conn.execute(sa.text("SELECT count(*) FROM agent_leases WHERE agent_id = :a"),
                                       {"a": agent})).scalar_one()

    class Refused(Exception):
        pass

    async def failing(conn) -> None:  # noqa: ANN001
        raise Refused

    with pytest.raises(Refused):
        async with table.hold(ORG, agent, wait_s=1, first_tx=failing):
            pass
    assert await lease_rows() == 0  # dropped with the failed opening: nobody holds the agent

    started = asyncio.Event()

    async def stalling(conn) -> None:  # noqa: ANN001
        started.set()
        await asyncio.sleep(30)

    async def turn() -> None:
        async with table.hold(ORG, agent, wait_s=1, first_tx=stalling):
            pass

    task = asyncio.create_task(turn())
    await started.wait()
    assert await lease_rows() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await lease_rows() == 0  # a request cancelled while opening does not keep the agent held


async def test_lease_is_renewed_while_the_turn_runs():
    store = redis_store()
    turn_leases = leases(redis=store, postgres=None, ttl_s=0.3)
    agent = ids.new_id("agent")
    beats = []

    async def beat() -> None:
        beats.append(time.monotonic())

    async with turn_leases.hold(ORG, agent, wait_s=1, on_renew=beat) as lease:
        await asyncio.sleep(0.8)  # well past the TTL
        assert not lease.lost and lease.renewals >= 2
        assert not await store.try_acquire(agent, "intruder", 5)
    assert len(beats) >= 2
    await store.close()


async def test_dead_redis_gives_503_for_one_ttl_then_the_postgres_lease_table(pg_router):
    dead = RedisLeaseStore(DEAD_REDIS)
    turn_leases = leases(redis=dead, postgres=PgLeaseStore(pg_router), ttl_s=0.5)
    agent = ids.new_id("agent")
    # Leases Redis granted just before it failed may still run elsewhere: wait them out, refusing cleanly.
    with pytest.raises(Unavailable) as refused:
        async with turn_leases.hold(ORG, agent, wait_s=3):
            pass
    assert refused.value.headers["Retry-After"] == "1"
    await asyncio.sleep(0.6)
    async with turn_leases.hold(ORG, agent, wait_s=3) as lease:
        assert lease.backend == "postgres"
    await dead.close()


async def _agent(router: StoreRouter, **fields) -> str:
    from recalld.llm.catalog import ModelCatalog
    from recalld.llm.http import ProviderHTTP
    from recalld.services.agents import AgentService
    from recalld.services.models import ModelResolver

    # llm_config given in full and the local embedding model: the catalogue is never read, no provider is asked.
    settings = Settings()
    service = AgentService(
        router, settings, ModelResolver(ModelCatalog(settings, ProviderHTTP())), SecretsBox([generate_key()])
    )
    state = await service.create(
        Caller(ORG, ids.DEFAULT_USER_ID),
        {"llm_config": {"model": "m", "model_endpoint_type": "openai", "context_window": 8000},
         "include_base_tools": False, **fields},
    )
    return state["id"]


async def test_fence_refuses_a_stale_writer(pg_router):
    agent_id = await _agent(pg_router)
    async with pg_router.read(ORG) as conn:
        fresh = await load_state(conn, ORG, agent_id, 20_000)
    async with pg_router.read(ORG) as conn:
        stale = await load_state(conn, ORG, agent_id, 20_000)
    row = {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": agent_id, "seq": 0, "role": "user",
           "content": [{"type": "text", "text": "first"}], "created_at": utcnow()}
    async with pg_router.write(ORG) as conn:
        await commit_step(conn, fresh, StepCommit(rows=[row]), run_id="")
    late = {**row, "id": ids.new_id("message"), "content": [{"type": "text", "text": "stale"}]}
    with pytest.raises(FenceViolation):
        async with pg_router.write(ORG) as conn:
            await commit_step(conn, stale, StepCommit(rows=[late]), run_id="")
    async with pg_router.read(ORG) as conn:
        texts = (await conn.execute(sa.text("SELECT content FROM messages WHERE agent_id = :a ORDER BY seq"),
                                    {"a": agent_id})).scalars().all()
    assert [t[0]["text"] for t in texts[1:]] == ["first"]


async def test_a_stale_turns_failure_leaves_the_newer_turns_stop_reason(pg_router):
    from recalld.llm.types import Usage
    from recalld.services.turns import TurnService

    agent_id = await _agent(pg_router)
    async with pg_router.read(ORG) as conn:
        fresh = await load_state(conn, ORG, agent_id, 20_000)
        stale = await load_state(conn, ORG, agent_id, 20_000)
    row = {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": agent_id, "seq": 0, "role": "user",
           "content": [{"type": "text", "text": "newer"}], "created_at": utcnow()}
    async with pg_router.write(ORG) as conn:
        await commit_step(conn, fresh, StepCommit(rows=[row], agent_update={"last_stop_reason": "end_turn"}),
                          run_id="")
    turns = TurnService(pg_router, Settings(), None, None, None)

    async def stop_reason() -> str:
        async with pg_router.read(ORG) as conn:
            return (await conn.execute(sa.text("SELECT last_stop_reason FROM agents WHERE id = :a"),
                                       {"a": agent_id})).scalar_one()

    await turns._fail(ORG, stale, ids.new_id("run"), "error", "fenced", Usage(), 0)
    assert await stop_reason() == "end_turn"  # the stale turn's failure did not overwrite the newer turn's
    await turns._fail(ORG, fresh, ids.new_id("run"), "llm_api_error", "provider down", Usage(), 0)
    assert await stop_reason() == "llm_api_error"  # the current turn's failure is recorded


async def test_reaper_fails_runs_whose_holder_went_quiet(pg_router):
    agent_id = await _agent(pg_router)
    settings = Settings(RECALLD_LEASE_TTL=1, RECALLD_LEASE_WAIT=1)
    old = utcnow() - timedelta(seconds=10)
    quiet, alive = ids.new_id("run"), ids.new_id("run")
    async with pg_router.write(ORG) as conn:
        for run_id, touched in ((quiet, old), (alive, utcnow())):
            await conn.execute(runs.insert().values(
                organization_id=ORG, id=run_id, agent_id=agent_id, status="running", created_at=old,
                updated_at=touched))
    assert await RunReaper(pg_router, settings).reap_once() >= 1
    async with pg_router.read(ORG) as conn:
        statuses = dict((await conn.execute(sa.select(runs.c.id, runs.c.status).where(
            runs.c.id.in_([quiet, alive])))).all())
    assert statuses == {quiet: "failed", alive: "running"}
