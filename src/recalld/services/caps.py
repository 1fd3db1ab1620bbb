"""Hard caps that protect the server whatever the organization (R22): a block's limit, a tool's source size,
the blocks of one agent. Over a cap: 400 naming the cap (and its setting); nothing changes."""

from __future__ import annotations

from recalld.errors import InvalidInput
from recalld.obs import limit_metrics


def check_block_limit_cap(org_id: str, label: str, limit: int, max_limit: int) -> None:
    if limit > max_limit:
        limit_metrics.rejected(org_id, "max_block_limit")
        raise InvalidInput(
            f"Block '{label}' asks for a limit of {limit} characters; blocks may have at most {max_limit} "
            "(RECALLD_MAX_BLOCK_LIMIT); nothing was changed."
        )


def check_tool_source_size(org_id: str, source: str | None, max_bytes: int) -> None:
    if source and len(source) * 4 > max_bytes and len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        limit_metrics.rejected(org_id, "max_tool_source_bytes")
        raise InvalidInput(
            f"Tool source is {len(source.encode('utf-8', 'surrogatepass'))} bytes; a tool's source may be at most "
            f"{max_bytes} bytes (RECALLD_MAX_TOOL_SOURCE_BYTES); nothing was stored."
        )


def check_blocks_per_agent(org_id: str, count: int, max_blocks: int) -> None:
    if count > max_blocks:
        limit_metrics.rejected(org_id, "max_blocks_per_agent")
        raise InvalidInput(
            f"An agent may have at most {max_blocks} blocks (RECALLD_MAX_BLOCKS_PER_AGENT); this change would "
            f"give it {count}; nothing was changed."
        )
