"""The message history, addressed by (agent_id, seq)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.schema import messages


async def insert_many(conn: AsyncConnection, rows: list[dict]) -> None:
    if rows:
        await conn.execute(messages.insert(), rows)


async def set_content(conn: AsyncConnection, org_id: str, message_id: str, content: list[dict]) -> None:
    await conn.execute(
        messages.update()
        .where(messages.c.organization_id == org_id, messages.c.id == message_id)
        .values(content=content)
    )


async def in_context_ids(conn: AsyncConnection, org_id: str, agent: dict) -> list[str]:
    """System message, the summary when the agent was compacted, then the kept run of history."""
    ids = [agent["system_message_id"]] if agent.get("system_message_id") else []
    if agent.get("summary_message_id"):
        ids.append(agent["summary_message_id"])
    rows = await conn.execute(
        sa.select(messages.c.id)
        .where(
            messages.c.organization_id == org_id,
            messages.c.agent_id == agent["id"],
            messages.c.seq >= agent["context_start_seq"],
            messages.c.seq <= agent["last_seq"],
        )
        .order_by(messages.c.seq)
    )
    ids.extend(rows.scalars())
    return ids


async def seqs_of(
    conn: AsyncConnection, org_id: str, agent_id: str, message_ids: list[str]
) -> dict[str, int]:
    if not message_ids:
        return {}
    rows = await conn.execute(
        sa.select(messages.c.id, messages.c.seq).where(
            messages.c.organization_id == org_id,
            messages.c.agent_id == agent_id,
            messages.c.id.in_(set(message_ids)),
        )
    )
    return {mid: seq for mid, seq in rows}


async def count_out_of_context(conn: AsyncConnection, org_id: str, agent: dict) -> int:
    """Messages of the history that have left the context (the prompt's recall-memory count)."""
    query = sa.select(sa.func.count()).where(
        messages.c.organization_id == org_id,
        messages.c.agent_id == agent["id"],
        messages.c.seq > 0,
        messages.c.seq < agent["context_start_seq"],
    )
    return int((await conn.execute(query)).scalar_one())
