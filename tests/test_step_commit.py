"""A step's commit: all of it or none of it, on both of PostgreSQL's paths (one statement without a
transaction, or statements in a transaction when memory changes) and on SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from recalld import ids
from recalld.coord.cluster_lease import Lease
from recalld.coord.pg_lease import PgLeaseStore
from recalld.services.turn_store import FenceViolation, StepCommit, commit_step, load_state, one_statement
from recalld.store.schema import agent_leases, agents, messages, runs, steps
from recalld.store.types import utcnow
from tests.test_leases import ORG, _agent


async def _run(router, agent_id: str) -> str:  # noqa: ANN001
    run_id = ids.new_id("run")
    async with router.write(ORG) as conn:
        await conn.execute(runs.insert().values(organization_id=ORG, id=run_id, agent_id=agent_id, status="running",
                                                created_at=utcnow(), updated_at=utcnow()))
    return run_id


def _commit(state, agent_id: str, run_id: str, lease: Lease | None, text: str, edit_memory: bool) -> StepCommit:  # noqa: ANN001
    now = utcnow()
    step_id = ids.new_id("step")
    rows = [
        {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": agent_id, "seq": 0, "role": role,
         "content": [{"type": "text", "text": f"{text} {role}"}], "run_id": run_id, "step_id": step_id,
         "created_at": now}
        for role in ("user", "assistant")
    ]
    commit = StepCommit(
        rows=rows,
        step_row={"organization_id": ORG, "id": step_id, "run_id": run_id, "agent_id": agent_id, "status": "success",
                  "stop_reason": "end_turn", "prompt_tokens": 7, "created_at": now},
        run_update={"status": "completed", "stop_reason": "end_turn", "result": {"text": text}, "completed_at": now},
        agent_update={"last_stop_reason": "end_turn", "last_run_completion": now},
        release_lease=lease,
    )
    if edit_memory:
        state.memory.set_value("human", f"{text} remembered")
        commit.memory = state.memory
        commit.system_text = f"system after {text}"
    return commit


async def _stored(router, agent_id: str, run_id: str) -> dict:  # noqa: ANN001
    async with router.read(ORG) as conn:
        texts = (await conn.execute(sa.select(messages.c.content).where(messages.c.agent_id == agent_id,
                                                                         messages.c.role != "system")
                                    .order_by(messages.c.seq))).scalars().all()
        agent = (await conn.execute(sa.select(agents).where(agents.c.id == agent_id))).mappings().one()
        run = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).mappings().one()
        step_count = (await conn.execute(sa.select(sa.func.count()).select_from(steps)
                                         .where(steps.c.run_id == run_id))).scalar_one()
        leases = (await conn.execute(sa.select(sa.func.count()).select_from(agent_leases)
                                     .where(agent_leases.c.agent_id == agent_id))).scalar_one()
    return {"texts": [t[0]["text"] for t in texts], "last_seq": agent["last_seq"],
            "stop": agent["last_stop_reason"], "run": (run["status"], run["stop_reason"], run["result"]),
            "steps": step_count, "leases": leases}


@pytest.mark.parametrize("edit_memory", [False, True], ids=["plain", "memory-edit"])
async def test_a_step_commits_whole_or_not_at_all(store_router, edit_memory):
    router = store_router
    agent_id = await _agent(router, memory_blocks=[{"label": "human", "value": "nothing yet"}])
    async with router.read(ORG) as conn:
        fresh = await load_state(conn, ORG, agent_id, 20_000)
        stale = await load_state(conn, ORG, agent_id, 20_000)
    lease = None
    if router.dialect == "postgresql":  # the turn's last commit drops its PostgreSQL lease row too
        lease = Lease(agent_id, "token-fresh", "postgres")
        granted, _ = await PgLeaseStore(router).try_acquire(ORG, agent_id, "test", lease.token, 30)
        assert granted
    run_fresh, run_stale = await _run(router, agent_id), await _run(router, agent_id)

    commit = _commit(fresh, agent_id, run_fresh, lease, "fresh", edit_memory)
    single = one_statement(router.dialect, commit)
    assert single == (router.dialect == "postgresql" and not edit_memory)
    async with (router.statement(ORG) if single else router.write(ORG)) as conn:
        await commit_step(conn, fresh, commit, run_fresh)
    after_fresh = await _stored(router, agent_id, run_fresh)
    assert after_fresh["texts"][-2:] == ["fresh user", "fresh assistant"]
    assert after_fresh["last_seq"] == fresh.agent["last_seq"]  # commit_step moved the state along
    assert after_fresh["run"] == ("completed", "end_turn", {"text": "fresh"})
    assert after_fresh["steps"] == 1 and after_fresh["stop"] == "end_turn"
    if lease is not None:
        assert lease.released and after_fresh["leases"] == 0
        lease = Lease(agent_id, "token-stale", "postgres")  # a stale holder's token: its row is gone anyway
    async with router.read(ORG) as conn:
        system = (await conn.execute(sa.select(messages.c.content).where(
            messages.c.id == fresh.agent["system_message_id"]))).scalar_one()
    assert (system[0]["text"] == "system after fresh") == edit_memory

    stale_commit = _commit(stale, agent_id, run_stale, lease, "stale", edit_memory)
    single = one_statement(router.dialect, stale_commit)
    with pytest.raises(FenceViolation):
        async with (router.statement(ORG) if single else router.write(ORG)) as conn:
            await commit_step(conn, stale, stale_commit, run_stale)
    after_stale = await _stored(router, agent_id, run_stale)
    assert after_stale["texts"] == after_fresh["texts"] and after_stale["last_seq"] == after_fresh["last_seq"]
    assert after_stale["run"] == ("running", None, None)  # the stale run was not completed
    assert after_stale["steps"] == 0
    async with router.read(ORG) as conn:
        state = await load_state(conn, ORG, agent_id, 20_000)
    remembered = [b["value"] for b in state.memory.blocks.values() if b["value"].endswith("remembered")]
    assert remembered == (["fresh remembered"] if edit_memory else [])
