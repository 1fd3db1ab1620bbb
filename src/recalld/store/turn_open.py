"""A turn's opening on PostgreSQL as one statement: read the agent with its blocks, tools and context
messages, and record the run.

The agent comes back as an ordinary row; its blocks, tools and messages come back as JSON arrays beside it
(json_agg), turned back into the rows the separate reads would have given. The run is a data-modifying CTE
that inserts only when the agent exists. One round trip instead of five; every round trip costs this server
about as much CPU as a whole statement. SQLite, with no round trips, keeps the separate reads.

The lease is not taken in this statement: a statement reads one snapshot, taken when it starts, and a lease
granted after waiting for the previous holder's commit would come with a snapshot from before that commit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.schema import agent_blocks, agent_tools, agents, blocks, messages, runs, tools
from recalld.store.types import UTCDateTime


@dataclass
class Opening:
    agent: dict | None  # None: no such agent
    blocks: list[dict]
    tools: list[dict]
    # The system and summary messages, and the context window's rows outside skip_seqs, in seq order.
    messages: list[dict]
    run_inserted: bool


def _json_rows(row: sa.Alias, source: sa.FromClause, *where: sa.ColumnElement, order: tuple) -> sa.Label:
    """The rows of `row` (an alias of a table) matching `where`, as one JSON array in `order`."""
    rows = sa.func.json_agg(aggregate_order_by(sa.literal_column(row.name), *order), type_=sa.JSON)
    return sa.select(rows).select_from(source).where(*where).scalar_subquery().label(f"{row.name}s")


@functools.lru_cache(maxsize=2)
def _statement(with_run: bool) -> sa.Select:
    by_agent = (agents.c.organization_id == sa.bindparam("org_id"), agents.c.id == sa.bindparam("agent_id"))
    block, tool, message = blocks.alias("block"), tools.alias("tool"), messages.alias("message")
    block_rows = _json_rows(
        block,
        block.join(agent_blocks, sa.and_(agent_blocks.c.organization_id == block.c.organization_id,
                                         agent_blocks.c.block_id == block.c.id)),
        agent_blocks.c.organization_id == agents.c.organization_id, agent_blocks.c.agent_id == agents.c.id,
        order=(block.c.created_at, block.c.id),
    )
    tool_rows = _json_rows(
        tool,
        tool.join(agent_tools, sa.and_(agent_tools.c.organization_id == tool.c.organization_id,
                                       agent_tools.c.tool_id == tool.c.id)),
        agent_tools.c.organization_id == agents.c.organization_id, agent_tools.c.agent_id == agents.c.id,
        order=(tool.c.created_at, tool.c.id),
    )
    # As messages.context_rows: the system message, the summary and the window, less what the caller holds.
    message_rows = _json_rows(
        message,
        message,
        message.c.organization_id == agents.c.organization_id,
        message.c.agent_id == agents.c.id,
        sa.or_(
            message.c.id == agents.c.system_message_id,
            message.c.id == agents.c.summary_message_id,
            sa.and_(message.c.seq >= agents.c.context_start_seq, message.c.seq <= agents.c.last_seq,
                    sa.not_(message.c.seq.between(sa.bindparam("skip_first"), sa.bindparam("skip_last")))),
        ),
        order=(message.c.seq,),
    )
    statement = sa.select(agents, block_rows, tool_rows, message_rows).where(*by_agent)
    if not with_run:
        return statement
    names = [c.name for c in runs.c]
    values = sa.select(*[sa.bindparam(f"r_{n}", type_=runs.c[n].type) for n in names]).where(*by_agent)
    new_run = runs.insert().from_select(names, values).returning(runs.c.id).cte("new_run")
    return statement.add_columns(sa.select(new_run.c.id).scalar_subquery().label("new_run_id"))


_DATETIMES = {
    table.name: [c.name for c in table.c if isinstance(c.type, UTCDateTime)] for table in (blocks, tools, messages)
}


def _rows(table: sa.Table, items: list[dict] | None) -> list[dict]:
    """Rows from json_agg as the plain reads give them: JSON carries timestamps as ISO text."""
    stamps = _DATETIMES[table.name]
    out = items or []
    for item in out:
        for name in stamps:
            value = item.get(name)
            if value is not None:
                item[name] = datetime.fromisoformat(value).astimezone(UTC)
    return out


async def open_turn(
    conn: AsyncConnection, org_id: str, agent_id: str, *, skip_seqs: tuple[int, int] | None,
    new_run: dict | None = None,
) -> Opening:
    """skip_seqs: (first, last) sequence numbers the caller already holds (its history cache), not read again.
    new_run: a runs row to insert."""
    first, last = skip_seqs or (0, -1)
    params: dict[str, Any] = {"org_id": org_id, "agent_id": agent_id, "skip_first": first, "skip_last": last}
    if new_run is not None:
        params.update((f"r_{c.name}", new_run.get(c.name)) for c in runs.c)
    row = (await conn.execute(_statement(new_run is not None), params)).mappings().first()
    if row is None:
        return Opening(None, [], [], [], False)
    return Opening(
        agent={c.name: row[c.name] for c in agents.c},
        blocks=_rows(blocks, row["blocks"]),
        tools=_rows(tools, row["tools"]),
        messages=_rows(messages, row["messages"]),
        run_inserted=new_run is not None and row["new_run_id"] is not None,
    )
