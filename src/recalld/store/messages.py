"""The message history, addressed by (agent_id, seq)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.history_cache import HistoryCache
from recalld.store.schema import messages

_INSERT = messages.insert()  # built once: building and cache-keying a statement costs more than running it


async def insert_many(conn: AsyncConnection, rows: list[dict]) -> None:
    if rows:
        await conn.execute(_INSERT, rows)


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
    ids.extend(i for i in rows.scalars() if i != agent.get("summary_message_id"))
    return ids


async def seqs_of(conn: AsyncConnection, org_id: str, agent_id: str, message_ids: list[str]) -> dict[str, int]:
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


async def get(conn: AsyncConnection, org_id: str, message_id: str) -> dict | None:
    row = (
        (
            await conn.execute(
                sa.select(messages).where(messages.c.organization_id == org_id, messages.c.id == message_id)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


# The system message, the summary and the kept run of history (a NULL id matches nothing).
_CONTEXT = (
    sa.select(messages)
    .where(
        messages.c.organization_id == sa.bindparam("org_id"),
        messages.c.agent_id == sa.bindparam("agent_id"),
        sa.or_(
            messages.c.id == sa.bindparam("system_id"),
            messages.c.id == sa.bindparam("summary_id"),
            sa.and_(messages.c.seq >= sa.bindparam("first_seq"), messages.c.seq <= sa.bindparam("last_seq")),
        ),
    )
    .order_by(messages.c.seq)
)


async def context_rows(
    conn: AsyncConnection, org_id: str, agent: dict, cache: HistoryCache | None = None
) -> tuple[dict | None, dict | None, list[dict]]:
    """The system message, the summary (if any) and the kept run of history, in one query; with a cache, only
    the rows past the cached ones are read (and the system and summary messages, always)."""
    first, last = agent["context_start_seq"], agent["last_seq"]
    cached = cache.rows(org_id, agent["id"], first, last) if cache is not None else []
    params = {
        "org_id": org_id,
        "agent_id": agent["id"],
        "system_id": agent.get("system_message_id"),
        "summary_id": agent.get("summary_message_id"),
        "first_seq": first + len(cached),
        "last_seq": last,
    }
    fetched = [dict(row) for row in (await conn.execute(_CONTEXT, params)).mappings()]
    context = assemble_context(org_id, agent, cached, fetched, cache, complete=not cached)
    if context is None:  # the cache and the database disagree: read the whole window
        cache.forget(org_id, agent["id"])
        params["first_seq"] = first
        fetched = [dict(row) for row in (await conn.execute(_CONTEXT, params)).mappings()]
        context = assemble_context(org_id, agent, [], fetched, cache, complete=True)
    return context


def assemble_context(
    org_id: str, agent: dict, cached: list[dict], fetched: list[dict], cache: HistoryCache | None, *, complete: bool
) -> tuple[dict | None, dict | None, list[dict]] | None:
    """(system, summary, history) from cached rows and freshly read ones (fresh rows win: the system message is
    rewritten in place). Unless `fetched` is the complete window, None when together they leave a gap in it."""
    first, last = agent["context_start_seq"], agent["last_seq"]
    by_seq = {row["seq"]: row for row in cached}
    by_seq.update((row["seq"], row) for row in fetched if first <= row["seq"] <= last)
    if not complete and len(by_seq) != max(0, last - first + 1):
        return None
    window = [by_seq[seq] for seq in sorted(by_seq)]
    if cache is not None:
        cache.store(org_id, agent["id"], first, window)  # it keeps only a contiguous window
    fresh = {row["id"]: row for row in fetched}
    system = fresh.get(agent.get("system_message_id")) if agent.get("system_message_id") else None
    summary = fresh.get(agent.get("summary_message_id")) if agent.get("summary_message_id") else None
    special = {agent.get("system_message_id"), agent.get("summary_message_id")}
    history = [row for row in window if row["id"] not in special]
    return system, summary, history


async def seq_of(conn: AsyncConnection, org_id: str, agent_id: str, message_id: str) -> int | None:
    query = sa.select(messages.c.seq).where(
        messages.c.organization_id == org_id, messages.c.agent_id == agent_id, messages.c.id == message_id
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def page_by_seq(
    conn: AsyncConnection,
    org_id: str,
    agent_id: str,
    *,
    after_seq: int | None,
    before_seq: int | None,
    limit: int,
    newest: bool,
    filters: list | None = None,
) -> list[dict]:
    """A page of history as an index range read on (agent_id, seq), returned oldest first."""
    query = sa.select(messages).where(
        messages.c.organization_id == org_id, messages.c.agent_id == agent_id, *(filters or [])
    )
    if after_seq is not None:
        query = query.where(messages.c.seq > after_seq)
    if before_seq is not None:
        query = query.where(messages.c.seq < before_seq)
    query = query.order_by(messages.c.seq.desc() if newest else messages.c.seq.asc()).limit(limit)
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return rows[::-1] if newest else rows


async def for_run(conn: AsyncConnection, org_id: str, run_id: str) -> list[dict]:
    query = sa.select(messages).where(messages.c.organization_id == org_id, messages.c.run_id == run_id)
    return [dict(r) for r in (await conn.execute(query.order_by(messages.c.seq))).mappings()]


async def by_otid(conn: AsyncConnection, org_id: str, agent_id: str, otid: str) -> dict | None:
    query = sa.select(messages).where(
        messages.c.organization_id == org_id, messages.c.agent_id == agent_id, messages.c.otid == otid
    )
    row = (await conn.execute(query.limit(1))).mappings().first()
    return dict(row) if row else None


async def search_text(
    conn: AsyncConnection,
    org_id: str,
    agent_id: str,
    *,
    query: str | None,
    roles: list[str],
    start=None,
    end=None,
    exclude_tool_call_names: tuple[str, ...] = (),
    limit: int = 5,
) -> list[dict]:
    """Case-insensitive substring search over the agent's messages, newest first."""
    conditions = [
        messages.c.organization_id == org_id,
        messages.c.agent_id == agent_id,
        messages.c.role.in_(roles),
        messages.c.seq > 0,
    ]
    if start is not None:
        conditions.append(messages.c.created_at >= start)
    if end is not None:
        conditions.append(messages.c.created_at <= end)
    if query:
        conditions.append(sa.func.lower(sa.cast(messages.c.content, sa.Text)).contains(query.lower(), autoescape=True))
    stmt = sa.select(messages).where(*conditions).order_by(messages.c.seq.desc()).limit(limit * 4 + 20)
    out = []
    for row in (await conn.execute(stmt)).mappings():
        row = dict(row)
        names = {(c.get("function") or {}).get("name") for c in row.get("tool_calls") or []}
        if names & set(exclude_tool_call_names):
            continue
        out.append(row)
    return out
