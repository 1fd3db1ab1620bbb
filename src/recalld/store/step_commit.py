"""A step's commit as one PostgreSQL statement.

The fence compare-and-set on the agent's last_seq, the step's messages, its step row, the run's final
update and the release of a PostgreSQL lease are data-modifying CTEs, and every write but the first reads
the first's RETURNING: when the compare-and-set matches no row, nothing at all is written and the
statement returns no row. One statement commits atomically on its own, so it needs no BEGIN and COMMIT
either: one round trip instead of eight, at roughly the same CPU cost per round trip as a whole statement.

Statements are built once per shape (which agent and run columns are set, how many messages) with named
bind parameters, and reused; asyncpg runs them directly (store.driver_statement). No parameter is named
like a column: SQLAlchemy would add it to an UPDATE's SET.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.driver_statement import DriverStatement
from recalld.store.schema import agent_leases, agents, messages, runs, steps


def _binds(table: sa.Table, prefix: str, names: tuple[str, ...]) -> dict[str, sa.BindParameter]:
    return {name: sa.bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names}


@functools.lru_cache(maxsize=128)
def _on_driver(agent_keys: tuple[str, ...], n_messages: int, with_step: bool, run_keys: tuple[str, ...],
               with_lease: bool) -> DriverStatement:
    return DriverStatement(_statement(agent_keys, n_messages, with_step, run_keys, with_lease))


def _statement(agent_keys: tuple[str, ...], n_messages: int, with_step: bool, run_keys: tuple[str, ...],
               with_lease: bool) -> sa.Select:
    cas = (
        agents.update()
        .where(agents.c.organization_id == sa.bindparam("w_org_id"), agents.c.id == sa.bindparam("w_agent_id"),
               agents.c.last_seq == sa.bindparam("w_expected_seq"))
        .values(_binds(agents, "a_", agent_keys))
        .returning(agents.c.id)
        .cte("fence")
    )
    fenced = sa.select(cas.c.id).exists()
    writes = []
    if n_messages:
        # One SELECT of parameters per message, each FROM the fence: no fence row, no message row.
        names = tuple(c.name for c in messages.c)
        rows = [sa.select(*_binds(messages, f"m{i}_", names).values()).select_from(cas) for i in range(n_messages)]
        source = rows[0] if n_messages == 1 else sa.union_all(*rows)
        writes.append(messages.insert().from_select(list(messages.c), source).cte("new_messages"))
    if with_step:
        names = tuple(c.name for c in steps.c)
        source = sa.select(*_binds(steps, "s_", names).values()).select_from(cas)
        writes.append(steps.insert().from_select(list(steps.c), source).cte("new_step"))
    if run_keys:
        writes.append(
            runs.update()
            .where(runs.c.organization_id == sa.bindparam("w_org_id"), runs.c.id == sa.bindparam("w_run_id"), fenced)
            .values(_binds(runs, "r_", run_keys))
            .cte("run_end")
        )
    if with_lease:
        writes.append(
            agent_leases.delete()
            .where(agent_leases.c.organization_id == sa.bindparam("w_org_id"),
                   agent_leases.c.agent_id == sa.bindparam("w_agent_id"),
                   agent_leases.c.token == sa.bindparam("w_lease_token"), fenced)
            .cte("lease_end")
        )
    # add_cte: PostgreSQL runs a data-modifying CTE even when the main query does not read it, but
    # SQLAlchemy renders only the CTEs a statement refers to unless they are added explicitly.
    return sa.select(cas.c.id).add_cte(*writes)


@functools.lru_cache(maxsize=256)
def _keys(table: str, prefix: str) -> tuple[tuple[str, str], ...]:
    """(parameter name, column name) for a row of the table: made once, not on every commit."""
    return tuple((f"{prefix}{c.name}", c.name) for c in {"messages": messages, "steps": steps}[table].c)


async def commit_in_one_statement(
    conn: AsyncConnection,
    *,
    org_id: str,
    agent_id: str,
    expected_seq: int,
    agent_values: dict[str, Any],
    message_rows: list[dict],
    step_row: dict | None,
    run_id: str,
    run_values: dict[str, Any] | None,
    lease_token: str | None,
) -> bool:
    """Write the step if the agent's last_seq is still expected_seq; False (and nothing written) if not."""
    agent_keys = tuple(sorted(agent_values))
    run_keys = tuple(sorted(run_values or ()))
    statement = _on_driver(agent_keys, len(message_rows), step_row is not None, run_keys, lease_token is not None)
    params: dict[str, Any] = {"w_org_id": org_id, "w_agent_id": agent_id, "w_expected_seq": expected_seq,
                              "w_run_id": run_id, "w_lease_token": lease_token}
    params.update((f"a_{k}", v) for k, v in agent_values.items())
    for i, row in enumerate(message_rows):
        params.update((key, row.get(name)) for key, name in _keys("messages", f"m{i}_"))
    if step_row is not None:
        params.update((key, step_row.get(name)) for key, name in _keys("steps", "s_"))
    if run_values:
        params.update((f"r_{k}", v) for k, v in run_values.items())
    return bool(await statement.fetch(conn, params))
