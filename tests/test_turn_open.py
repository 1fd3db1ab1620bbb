"""The turn's one-statement opening (store/turn_open.py) reads exactly what the separate reads do, on both
backends: the same agent, blocks, tools and context window, with or without the history cache."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from recalld import ids
from recalld.errors import NotFound
from recalld.services.turn_store import StepCommit, commit_step, load_state, open_state
from recalld.store.history_cache import HistoryCache
from recalld.store.schema import messages, runs
from recalld.store.types import utcnow
from tests.test_leases import ORG, _agent

LIMIT = 20_000


async def _step(router, state, texts: list[str], **commit) -> None:  # noqa: ANN001
    """Commit one user message and one assistant reply calling a tool, and the tool's return."""
    now = utcnow()
    call = {"id": ids.new_id("call"), "type": "function",
            "function": {"name": "core_memory_append", "arguments": '{"label": "human", "content": "ü"}'}}
    rows = []
    for text in texts:
        rows += [
            {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": state.agent["id"], "seq": 0,
             "role": "user", "content": [{"type": "text", "text": text}], "otid": ids.new_id("otid"),
             "created_at": now},
            {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": state.agent["id"], "seq": 0,
             "role": "assistant", "content": [{"type": "text", "text": f"thinking about {text}"}],
             "tool_calls": [call], "model": "m", "is_err": False, "created_at": now},
            {"organization_id": ORG, "id": ids.new_id("message"), "agent_id": state.agent["id"], "seq": 0,
             "role": "tool", "content": [{"type": "text", "text": '{"status": "OK"}'}], "tool_call_id": call["id"],
             "tool_returns": [{"status": "success", "stdout": None}], "name": "core_memory_append",
             "created_at": now},
        ]
    rows = [{c.name: None for c in messages.c} | row for row in rows]  # as message_row() gives them: every column
    async with router.write(ORG) as conn:
        await commit_step(conn, state, StepCommit(rows=rows, **commit), run_id="")


def _typed(value):  # noqa: ANN001, ANN202
    """Values with their types, so that 1 and True, or a timestamp and its text, differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _same(a, b) -> None:  # noqa: ANN001
    assert _typed(a.agent) == _typed(b.agent)
    assert a.system_text == b.system_text and _typed(a.summary) == _typed(b.summary)
    assert _typed(a.history) == _typed(b.history)
    assert _typed(a.tools) == _typed(b.tools)
    assert _typed(a.memory.blocks) == _typed(b.memory.blocks)
    assert a.recall_count == b.recall_count


async def _both(router, agent_id: str, cache: HistoryCache | None):  # noqa: ANN001
    async with router.read(ORG) as conn:
        plain = await load_state(conn, ORG, agent_id, LIMIT)
    async with router.statement(ORG) as conn:
        opened, inserted = await open_state(conn, ORG, agent_id, LIMIT, cache)
    assert not inserted
    return plain, opened


async def test_one_statement_reads_what_the_separate_reads_do(store_router):
    router = store_router
    agent_id = await _agent(
        router,
        include_base_tools=True,
        memory_blocks=[{"label": "human", "value": "Ann, likes tea", "metadata": {"k": [1, None, "x"]}},
                       {"label": "policy", "value": "be brief", "read_only": True, "limit": 500}],
    )
    cache = HistoryCache(10_000)
    plain, opened = await _both(router, agent_id, cache)
    _same(plain, opened)
    assert opened.tools and any(b["read_only"] for b in opened.memory.blocks.values())

    for round_ in range(3):  # the cache holds the window; each opening reads only the new rows
        await _step(router, opened, [f"hello {round_}", f"again {round_}"])
        plain, opened = await _both(router, agent_id, cache)
        _same(plain, opened)
        assert [r["seq"] for r in opened.history] == list(range(opened.history[0]["seq"], opened.agent["last_seq"] + 1))

    # The window moves on past a summary (as compaction does); the cached rows before it are no longer needed.
    summary_id = ids.new_id("message")
    summary = {c.name: None for c in messages.c} | {
        "organization_id": ORG, "id": summary_id, "agent_id": agent_id, "seq": 0, "role": "user",
        "content": [{"type": "text", "text": "summary so far"}], "created_at": utcnow()}
    start = opened.agent["last_seq"] - 2
    async with router.write(ORG) as conn:
        await commit_step(conn, opened, StepCommit(rows=[summary], context_start_seq=start,
                                                   summary_message_id=summary_id), run_id="")
    plain, opened = await _both(router, agent_id, cache)
    _same(plain, opened)
    assert opened.summary["id"] == summary_id and opened.agent["context_start_seq"] == start

    # A cached span that does not line up with the window (it starts later): the opening still reads it all.
    window = opened.history
    cache.store(ORG, agent_id, window[2]["seq"], window[2:])
    plain, opened = await _both(router, agent_id, cache)
    _same(plain, opened)


async def test_the_run_is_inserted_with_the_opening_on_postgres_only_when_the_agent_exists(pg_router):
    agent_id = await _agent(pg_router)
    now = utcnow()

    def run_row(agent: str) -> dict:
        return {"organization_id": ORG, "id": ids.new_id("run"), "agent_id": agent, "status": "running",
                "metadata": {"run_type": "send_message"}, "created_at": now, "updated_at": now}

    async def runs_of(agent: str) -> list[str]:
        async with pg_router.read(ORG) as conn:
            return list((await conn.execute(sa.select(runs.c.id).where(runs.c.agent_id == agent))).scalars())

    fresh = run_row(agent_id)
    async with pg_router.statement(ORG) as conn:
        state, inserted = await open_state(conn, ORG, agent_id, LIMIT, None, new_run=fresh)
    assert inserted and state.agent["id"] == agent_id
    assert await runs_of(agent_id) == [fresh["id"]]

    missing = ids.new_id("agent")
    with pytest.raises(NotFound):
        async with pg_router.statement(ORG) as conn:
            await open_state(conn, ORG, missing, LIMIT, None, new_run=run_row(missing))
    assert await runs_of(missing) == []

    # A repeated send (same otid, or same Idempotency-Key) inserts nothing: the caller finds the first run.
    for key in ("input_otid", "idempotency_key"):
        first = {**run_row(agent_id), key: f"repeat-{key}"}
        async with pg_router.statement(ORG) as conn:
            assert (await open_state(conn, ORG, agent_id, LIMIT, None, new_run=first))[1]
            repeat = {**run_row(agent_id), key: f"repeat-{key}"}
            state, inserted = await open_state(conn, ORG, agent_id, LIMIT, None, new_run=repeat)
        assert not inserted and state.agent["id"] == agent_id
        assert repeat["id"] not in await runs_of(agent_id)
