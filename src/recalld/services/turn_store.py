"""The two database moments of a turn: read the agent's state (one short transaction) and commit a step
(one short transaction, guarded by the fence compare-and-set on the agent's last sequence number)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.agent.loop import TurnState
from recalld.agent.memory_tools import Memory
from recalld.errors import Conflict, NotFound
from recalld.store import agents as agents_store
from recalld.store import blocks as blocks_store
from recalld.store import messages as messages_store
from recalld.store import runs as runs_store
from recalld.store import tools as tools_store
from recalld.store import turn_open
from recalld.store.history_cache import HistoryCache
from recalld.store.schema import agent_blocks, agent_leases, blocks, messages
from recalld.store.step_commit import commit_in_one_statement
from recalld.store.types import utcnow


class FenceViolation(Conflict):
    """Another writer committed to this agent since the turn read it; the step is refused, not merged."""


async def load_state(
    conn: AsyncConnection, org_id: str, agent_id: str, default_limit: int, history: HistoryCache | None = None
) -> TurnState:
    agent = await agents_store.get(conn, org_id, agent_id)
    if agent is None:
        raise NotFound(f"Agent with ID {agent_id} not found")
    block_rows = await blocks_store.for_agent(conn, org_id, agent_id)
    tool_rows = await tools_store.for_agent(conn, org_id, agent_id)
    context = await messages_store.context_rows(conn, org_id, agent, history)
    return _state(agent, block_rows, tool_rows, context, default_limit)


async def open_state(
    conn: AsyncConnection, org_id: str, agent_id: str, default_limit: int, history: HistoryCache | None, *,
    new_run: dict | None = None,
) -> tuple[TurnState, bool]:
    """load_state in one statement which, on PostgreSQL, can also insert the run (store/turn_open.py).
    Returns (state, whether new_run was inserted)."""
    span = history.span(org_id, agent_id) if history is not None else None
    # Read only past the cached rows. A cache that does not reach back to the window's start leaves a gap,
    # which assemble_context finds.
    from_seq = span[1] + 1 if span else 0
    opening = await turn_open.open_turn(conn, org_id, agent_id, from_seq=from_seq, new_run=new_run)
    agent = opening.agent
    if agent is None:
        raise NotFound(f"Agent with ID {agent_id} not found")
    cached = history.rows(org_id, agent_id, agent["context_start_seq"], agent["last_seq"]) if span else []
    context = messages_store.assemble_context(org_id, agent, cached, opening.messages, history, complete=span is None)
    if context is None:  # the cached span did not line up with the window: read the window the ordinary way
        context = await messages_store.context_rows(conn, org_id, agent, history)
    return _state(agent, opening.blocks, opening.tools, context, default_limit), opening.run_inserted


def _state(agent: dict, block_rows: list[dict], tool_rows: list[dict], context: tuple, default_limit: int) -> TurnState:
    system, summary, rows = context
    return TurnState(
        agent=agent,
        system_text=_text(system),
        summary=summary,
        history=rows,
        tools={t["name"]: t for t in tool_rows},
        memory=Memory(blocks={b["label"]: dict(b) for b in block_rows}, default_limit=default_limit),
        # Sequence numbers are contiguous, so the messages before the window are context_start_seq - 1.
        recall_count=max(0, agent["context_start_seq"] - 1),
    )


def _text(row: dict | None) -> str:
    if row is None:
        return ""
    return "".join(p.get("text", "") for p in row.get("content") or [] if p.get("type") == "text")


@dataclass
class StepCommit:
    """Everything one step writes; applied atomically by commit_step."""

    rows: list[dict]
    step_row: dict | None = None
    system_text: str | None = None
    memory: Memory | None = None
    context_start_seq: int | None = None
    summary_message_id: str | None = None
    clear_summary: bool = False
    run_update: dict | None = None
    agent_update: dict | None = None
    # message_buffer_autoclear: after the turn, the window holds only the system message again.
    autoclear: bool = False
    # The turn's last commit also drops its PostgreSQL lease row: one transaction fewer per turn.
    release_lease: Any = None


async def commit_step(conn: AsyncConnection, state: TurnState, commit: StepCommit, run_id: str) -> None:
    """Write one step; fails with FenceViolation (changing nothing) if the agent moved on meanwhile. The
    connection is in a transaction (router.write) unless one_statement(commit) (router.statement will do)."""
    agent = state.agent
    org_id, agent_id = agent["organization_id"], agent["id"]
    expected = agent["last_seq"]
    for offset, row in enumerate(commit.rows, start=1):
        row["seq"] = expected + offset
    new_last = expected + len(commit.rows)
    now = utcnow()
    values: dict = {"last_seq": new_last, "updated_at": now}
    if commit.context_start_seq is not None:
        values["context_start_seq"] = commit.context_start_seq
    if commit.summary_message_id is not None or commit.clear_summary:
        values["summary_message_id"] = commit.summary_message_id
    values.update(commit.agent_update or {})
    if commit.autoclear:
        values["context_start_seq"] = new_last + 1
        values["summary_message_id"] = None
    lease = commit.release_lease
    lease_token = lease.token if lease is not None and lease.backend == "postgres" else None
    if one_statement(conn.dialect.name, commit):
        written = await commit_in_one_statement(
            conn, org_id=org_id, agent_id=agent_id, expected_seq=expected, agent_values=values,
            message_rows=commit.rows, step_row=commit.step_row, run_id=run_id,
            run_values={**commit.run_update, "updated_at": now} if commit.run_update else None,
            lease_token=lease_token,
        )
    else:
        written = await _commit_in_statements(conn, state, commit, run_id, values, lease_token, now)
    if not written:
        raise FenceViolation(
            f"Agent {agent_id} changed while this turn was running (another writer committed first); "
            "the step was not stored."
        )
    if lease_token is not None:
        lease.released = True
    agent.update(values)


def one_statement(dialect: str, commit: StepCommit) -> bool:
    """Whether commit_step writes this commit in one statement, which then needs no transaction around it
    (router.statement). Memory edits and system message rewrites take the transaction path."""
    return dialect == "postgresql" and commit.memory is None and commit.system_text is None


async def _commit_in_statements(conn: AsyncConnection, state: TurnState, commit: StepCommit, run_id: str,
                                values: dict, lease_token: str | None, now) -> bool:  # noqa: ANN001
    """The commit as a sequence of statements, for a connection inside a transaction (router.write)."""
    agent = state.agent
    org_id, agent_id = agent["organization_id"], agent["id"]
    result = await conn.execute(
        agents_store.UPDATE_IF_LAST_SEQ,
        {**values, "where_org_id": org_id, "where_agent_id": agent_id, "where_last_seq": agent["last_seq"]},
    )
    if result.rowcount != 1:
        return False
    await messages_store.insert_many(conn, commit.rows)
    if commit.memory is not None:
        await _write_memory(conn, org_id, agent_id, commit.memory, now)
    if commit.system_text is not None and agent.get("system_message_id"):
        await messages_store.set_content(
            conn, org_id, agent["system_message_id"], [{"type": "text", "text": commit.system_text}]
        )
    if commit.step_row is not None:
        await runs_store.insert_step(conn, commit.step_row)
    if commit.run_update:
        await runs_store.update(conn, org_id, run_id, {**commit.run_update, "updated_at": now})
    if lease_token is not None:
        await conn.execute(agent_leases.delete().where(
            agent_leases.c.organization_id == org_id, agent_leases.c.agent_id == agent_id,
            agent_leases.c.token == lease_token))
    return True


async def _write_memory(conn: AsyncConnection, org_id: str, agent_id: str, memory: Memory, now) -> None:  # noqa: ANN001
    for label in memory.changed:
        block = memory.blocks[label]
        await conn.execute(
            blocks.update()
            .where(blocks.c.organization_id == org_id, blocks.c.id == block["id"])
            .values(value=block["value"], label=block["label"], updated_at=now)
        )
        await conn.execute(
            agent_blocks.update()
            .where(agent_blocks.c.organization_id == org_id, agent_blocks.c.block_id == block["id"])
            .values(label=block["label"])
        )
    for label in memory.created:
        block = memory.blocks[label]
        await blocks_store.insert(
            conn,
            [
                {
                    "organization_id": org_id,
                    "id": block["id"],
                    "label": label,
                    "value": block["value"],
                    "limit": block["limit"],
                    "description": block.get("description"),
                    "read_only": False,
                    "metadata": {},
                    "tags": [],
                    "is_template": False,
                    "preserve_on_migration": False,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        await blocks_store.attach(conn, org_id, agent_id, block["id"], label)
    for block_id in memory.detached:
        await blocks_store.detach(conn, org_id, agent_id, block_id)
    memory.changed.clear()
    memory.created.clear()
    memory.detached.clear()


async def count_committed(conn: AsyncConnection, org_id: str, run_id: str) -> int:
    """Messages a run has stored (0 means its input was never written)."""
    query = sa.select(sa.func.count()).where(messages.c.organization_id == org_id, messages.c.run_id == run_id)
    return int((await conn.execute(query)).scalar_one())
