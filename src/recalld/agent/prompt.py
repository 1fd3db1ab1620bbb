"""The system prompt: templates per agent type and the compiled core-memory rendering (contract 8.1, 8.2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CORE_MEMORY_PLACEHOLDER = "{CORE_MEMORY}"

LETTA_V1_SYSTEM = """<base_instructions>
You are a helpful self-improving agent with advanced memory.
Your memory has two parts: memory blocks, which are always visible to you below, and external memory
(your conversation history and archival memory), which you reach with tools.
Keep your memory blocks up to date as you learn about the user and yourself: edit them with the memory tools.
To continue after a tool, call another tool; to yield to the user, end your response without a tool call.
</base_instructions>"""

MEMGPT_SYSTEM = """<base_instructions>
You are Letta, a digital companion with a persistent memory, talking with a user.
You think privately before you act; the user sees only what you send with the send_message tool.
Your core memory below is always in view: the persona block holds who you are, the human block what you know
about the user. Edit it with the memory tools when you learn something worth keeping.
Your conversation history and archival memory are out of view; search them with tools when you need them.
Request a heartbeat when you want to run another step after a tool call.
</base_instructions>"""

REACT_SYSTEM = """<base_instructions>
You are an agent that solves tasks by reasoning and calling tools, one step at a time.
When the task is done, answer without calling a tool.
</base_instructions>"""

SLEEPTIME_SYSTEM = """<base_instructions>
You are a memory-management agent. Read the conversation you are given and reorganise the memory blocks so they
hold what matters, using the memory tools; call memory_finish_edits when done.
</base_instructions>"""

_TEMPLATES = {
    "letta_v1_agent": LETTA_V1_SYSTEM,
    "memgpt_agent": MEMGPT_SYSTEM,
    "memgpt_v2_agent": MEMGPT_SYSTEM,
    "react_agent": REACT_SYSTEM,
    "workflow_agent": REACT_SYSTEM,
    "sleeptime_agent": SLEEPTIME_SYSTEM,
    "voice_sleeptime_agent": SLEEPTIME_SYSTEM,
}

# These types act on tools alone; their prompt carries no memory blocks.
_NO_MEMORY_TYPES = frozenset({"react_agent", "workflow_agent"})


def default_system(agent_type: str) -> str:
    return _TEMPLATES.get(agent_type, LETTA_V1_SYSTEM)


def agent_zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def prompt_time(moment: datetime, timezone: str | None) -> str:
    """Times inside prompts: `2026-11-24 12:32:44 AM UTC+0000` in the agent's zone."""
    return moment.astimezone(agent_zone(timezone)).strftime("%Y-%m-%d %I:%M:%S %p %Z%z")


def render_blocks(blocks: Iterable[Mapping]) -> str:
    parts = []
    for block in blocks:
        label, value = block["label"], block["value"] or ""
        meta = []
        if block.get("read_only"):
            meta.append("- read_only=true")
        meta.append(f"- chars_current={len(value)}")
        meta.append(f"- chars_limit={block['limit']}")
        parts.append(
            f"<{label}>\n<description>\n{block.get('description') or ''}\n</description>\n"
            f"<metadata>\n" + "\n".join(meta) + f"\n</metadata>\n<value>\n{value}\n</value>\n</{label}>"
        )
    if not parts:
        return ""
    return (
        "<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n"
        + "\n\n".join(parts)
        + "\n\n</memory_blocks>"
    )


def render_metadata(agent_id: str, now: datetime, timezone: str | None, recall_count: int, archival_count: int) -> str:
    lines = [
        "<memory_metadata>",
        f"- AGENT_ID: {agent_id}",
        "- CONVERSATION_ID: default",
        f"- System prompt last recompiled: {prompt_time(now, timezone)}",
        f"- {recall_count} previous messages between you and the user are stored in recall memory",
    ]
    if archival_count > 0:
        lines.append(
            f"- {archival_count} total memories you created are stored in archival memory (use tools to access them)"
        )
    lines.append("</memory_metadata>")
    return "\n".join(lines)


def compile_system_message(
    *,
    system: str,
    agent_type: str,
    agent_id: str,
    blocks: Iterable[Mapping],
    timezone: str | None,
    now: datetime,
    recall_count: int = 0,
    archival_count: int = 0,
) -> str:
    """The text of the first in-context message: instructions, core memory, memory metadata."""
    memory = "" if agent_type in _NO_MEMORY_TYPES else render_blocks(blocks)
    metadata = render_metadata(agent_id, now, timezone, recall_count, archival_count)
    section = f"{memory}\n\n{metadata}" if memory else metadata
    if CORE_MEMORY_PLACEHOLDER in system:
        return system.replace(CORE_MEMORY_PLACEHOLDER, section)
    return f"{system}\n\n{section}"
