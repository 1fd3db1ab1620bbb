"""A turn's opening as one statement: read the agent with its blocks, tools and context messages, and (on
PostgreSQL) record the run.

The agent comes back as an ordinary row; its blocks, tools and messages come back as JSON arrays beside it
(json_agg on PostgreSQL, json_group_array on SQLite), turned back into the rows the separate reads would have
given. On PostgreSQL the run is a data-modifying CTE that inserts only when the agent exists and has no run of
the same Idempotency-Key or otid: one round trip instead of five, and every round trip costs this server about
as much CPU as a whole statement. SQLite has no round trips, but each statement still costs SQLAlchemy's own
work; it inserts the run separately.

The lease is not taken in this statement: a statement reads one snapshot, taken when it starts, and a lease
granted after waiting for the previous holder's commit would come with a snapshot from before that commit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.driver_statement import DriverStatement
from recalld.store.schema import agent_blocks, agent_tools, agents, blocks, messages, runs, tools
from recalld.store.types import UTCDateTime


@dataclass
class Opening:
    agent: dict | None  # None: no such agent
    blocks: list[dict]
    tools: list[dict]
    # The system and summary messages, and the context window's rows from from_seq on, in seq order.
    messages: list[dict]
    run_inserted: bool


def _json_rows(dialect: str, row: sa.Alias, source: sa.FromClause, *where: sa.ColumnElement, label: str,
               one: bool = False) -> sa.Label:
    """The rows of `row` (an alias of a table) matching `where` as one JSON array in no particular order, or
    with `one` the single row as a JSON object."""
    if dialect == "postgresql":
        whole = sa.literal_column(row.name)
        rows = sa.func.row_to_json(whole, type_=sa.JSON) if one else sa.func.json_agg(whole, type_=sa.JSON)
    else:  # SQLite keeps JSON columns as text: json() embeds them as JSON rather than as strings
        # Keys as SQL text, not bound parameters: a hundred of them would be processed on every execution.
        fields = [x for c in row.c for x in (sa.literal_column(f"'{c.name}'"), sa.func.json(c) if _is_json(c) else c)]
        rows = sa.func.json_object(*fields) if one else sa.func.json_group_array(sa.func.json_object(*fields))
        rows = sa.type_coerce(rows, sa.JSON)
    return sa.select(rows).select_from(source).where(*where).scalar_subquery().label(label)


def _is_json(column: sa.Column) -> bool:
    return isinstance(column.type, sa.JSON)


def _attached(dialect: str, row: sa.Alias, link: sa.Table, link_id: sa.Column, *, label: str) -> sa.Label:
    """The rows of `row` the agent is linked to through `link` (agent_blocks, agent_tools), as one JSON array."""
    source = row.join(link, sa.and_(link.c.organization_id == row.c.organization_id, link_id == row.c.id))
    return _json_rows(dialect, row, source, link.c.organization_id == agents.c.organization_id,
                      link.c.agent_id == agents.c.id, label=label)


@functools.lru_cache(maxsize=4)
def _statement(dialect: str, with_run: bool) -> sa.Select:
    by_agent = (agents.c.organization_id == sa.bindparam("org_id"), agents.c.id == sa.bindparam("agent_id"))
    block_rows = _attached(dialect, blocks.alias("block"), agent_blocks, agent_blocks.c.block_id, label="blocks")
    tool_rows = _attached(dialect, tools.alias("tool"), agent_tools, agent_tools.c.tool_id, label="tools")
    # As messages.context_rows: the system message, the summary, and the window from the first row the caller
    # does not hold. Three lookups, each an index search (one OR of them all would scan the agent's history).
    greatest = sa.func.greatest if dialect == "postgresql" else sa.func.max
    system, summary, window = (messages.alias(name) for name in ("system_message", "summary_message", "message"))
    system_row = _json_rows(dialect, system, system, system.c.organization_id == agents.c.organization_id,
                            system.c.id == agents.c.system_message_id, label="system_message", one=True)
    summary_row = _json_rows(dialect, summary, summary, summary.c.organization_id == agents.c.organization_id,
                             summary.c.id == agents.c.summary_message_id, label="summary_message", one=True)
    window_rows = _json_rows(
        dialect,
        window,
        window,
        window.c.organization_id == agents.c.organization_id,
        window.c.agent_id == agents.c.id,
        window.c.seq >= greatest(agents.c.context_start_seq, sa.bindparam("from_seq")),
        window.c.seq <= agents.c.last_seq,
        label="messages",
    )
    statement = sa.select(agents, block_rows, tool_rows, system_row, summary_row, window_rows).where(*by_agent)
    if not with_run:
        return statement
    names = [c.name for c in runs.c]
    values = sa.select(*[sa.bindparam(f"r_{n}", type_=runs.c[n].type) for n in names]).where(*by_agent)
    # Not when the agent already has a run of the same Idempotency-Key or otid (unique per agent): the caller
    # then finds that run and repeats or continues it.
    new_run = pg_insert(runs).from_select(names, values).on_conflict_do_nothing().returning(runs.c.id).cte("new_run")
    return statement.add_columns(sa.select(new_run.c.id).scalar_subquery().label("new_run_id"))


@functools.lru_cache(maxsize=2)
def _on_driver(with_run: bool) -> DriverStatement:
    return DriverStatement(_statement("postgresql", with_run))


# What JSON cannot carry as the column's own type: timestamps (ISO text) and, from SQLite, booleans (0/1).
_CONVERTED = {
    table.name: (
        [c.name for c in table.c if isinstance(c.type, UTCDateTime)],
        [c.name for c in table.c if isinstance(c.type, sa.Boolean)],
    )
    for table in (blocks, tools, messages)
}


def _rows(table: sa.Table, items: list[dict] | None, *order: str) -> list[dict]:
    """Rows from a JSON array as the plain reads give them, sorted by `order`."""
    stamps, flags = _CONVERTED[table.name]
    out = items or []
    for item in out:
        for name in stamps:
            value = item.get(name)
            if value is not None:
                stamp = datetime.fromisoformat(value)
                item[name] = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        for name in flags:
            value = item.get(name)
            if value is not None:
                item[name] = bool(value)
    out.sort(key=lambda item: tuple(item[name] for name in order))
    return out


async def open_turn(
    conn: AsyncConnection, org_id: str, agent_id: str, *, from_seq: int = 0, new_run: dict | None = None
) -> Opening:
    """from_seq: the window is read from this sequence number on (the caller holds the rows before it).
    new_run: a runs row to insert."""
    params: dict[str, Any] = {"org_id": org_id, "agent_id": agent_id, "from_seq": from_seq}
    if new_run is not None:
        params.update((f"r_{c.name}", new_run.get(c.name)) for c in runs.c)
    if new_run is not None and conn.dialect.name != "postgresql":
        raise ValueError("only PostgreSQL inserts the run in the opening statement")
    if conn.dialect.name == "postgresql":  # once per turn: asyncpg runs it without SQLAlchemy's per-execution work
        rows = await _on_driver(new_run is not None).fetch(conn, params)
        row = rows[0] if rows else None
    else:
        row = (await conn.execute(_statement(conn.dialect.name, False), params)).mappings().first()
    if row is None:
        return Opening(None, [], [], [], False)
    return Opening(
        agent={c.name: row[c.name] for c in agents.c},
        blocks=_rows(blocks, row["blocks"], "created_at", "id"),
        tools=_rows(tools, row["tools"], "created_at", "id"),
        messages=_rows(messages, [m for m in (row["system_message"], row["summary_message"]) if m is not None]
                       + (row["messages"] or []), "seq"),
        run_inserted=new_run is not None and row["new_run_id"] is not None,
    )
