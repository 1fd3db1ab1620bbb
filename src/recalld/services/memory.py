"""Core memory: block limits and recompiling an agent's system message from its blocks."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.agent.prompt import compile_system_message
from recalld.errors import InvalidInput
from recalld.store import agents as agents_store
from recalld.store import blocks as blocks_store
from recalld.store import messages as messages_store
from recalld.store import passages as passages_store
from recalld.store.types import utcnow


def check_block_limit(label: str, value: str, limit: int) -> None:
    """Core memory limits are enforced (contract R12): an over-long value is refused, naming the block."""
    if len(value) > limit:
        raise InvalidInput(
            f"Block '{label}' value is {len(value)} characters, over its limit of {limit} characters; "
            "nothing was changed."
        )


async def archival_count(conn: AsyncConnection, org_id: str, agent_id: str) -> int:
    """Passages in the agent's archives, for the prompt's metadata."""
    return await passages_store.count_for_agent(conn, org_id, agent_id)


async def recompile(conn: AsyncConnection, org_id: str, agent_id: str, agent: dict | None = None) -> None:
    """Rewrite the agent's system message in place from its current blocks (same message id)."""
    agent = agent or await agents_store.get(conn, org_id, agent_id)
    if agent is None or not agent.get("system_message_id"):
        return
    text = compile_system_message(
        system=agent["system"],
        agent_type=agent["agent_type"],
        agent_id=agent_id,
        blocks=await blocks_store.for_agent(conn, org_id, agent_id),
        timezone=agent["timezone"],
        now=utcnow(),
        recall_count=await messages_store.count_out_of_context(conn, org_id, agent),
        archival_count=await archival_count(conn, org_id, agent_id),
    )
    await messages_store.set_content(conn, org_id, agent["system_message_id"], [{"type": "text", "text": text}])
