"""The built-in tools, and which of them each agent type gets by default (contract 6.3)."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass

from ..errors import InvalidInput
from . import builtin_defs
from .schema import derive_json_schema

DEFAULT_RETURN_CHAR_LIMIT = 50_000


@dataclass(frozen=True)
class BuiltinTool:
    """A built-in tool as stored and listed; `json_schema` is shared, so copy it before changing it."""

    name: str
    tool_type: str
    description: str
    json_schema: dict
    source_code: str
    return_char_limit: int = DEFAULT_RETURN_CHAR_LIMIT


_TOOL_TYPES = {
    "send_message": "letta_core",
    "conversation_search": "letta_core",
    "archival_memory_insert": "letta_core",
    "archival_memory_search": "letta_core",
    "core_memory_append": "letta_memory_core",
    "core_memory_replace": "letta_memory_core",
    "memory_apply_patch": "letta_memory_core",
    "memory": "letta_memory_core",
    "memory_replace": "letta_sleeptime_core",
    "memory_insert": "letta_sleeptime_core",
    "memory_rethink": "letta_sleeptime_core",
    "memory_finish_edits": "letta_sleeptime_core",
}


def _build(name: str, tool_type: str) -> BuiltinTool:
    # Same derivation as a user's tool, so built-ins and custom tools can't drift apart in shape.
    source_code = textwrap.dedent(inspect.getsource(getattr(builtin_defs, name)))
    json_schema = derive_json_schema(source_code)
    return BuiltinTool(
        name=name,
        tool_type=tool_type,
        description=json_schema["description"],
        json_schema=json_schema,
        source_code=source_code,
    )


BUILTIN_TOOLS: dict[str, BuiltinTool] = {name: _build(name, kind) for name, kind in _TOOL_TYPES.items()}

AGENT_TYPES = (
    "memgpt_agent",
    "memgpt_v2_agent",
    "letta_v1_agent",
    "react_agent",
    "workflow_agent",
    "split_thread_agent",
    "sleeptime_agent",
    "voice_convo_agent",
    "voice_sleeptime_agent",
)

_LETTA_V1_TOOLS = ("conversation_search", "memory_insert", "memory_replace")

BASE_TOOLS: dict[str, tuple[str, ...]] = {
    "memgpt_agent": (
        "send_message",
        "conversation_search",
        "core_memory_append",
        "core_memory_replace",
        "memory",
        "memory_apply_patch",
    ),
    "memgpt_v2_agent": ("send_message", "conversation_search", "memory_insert", "memory_replace"),
    "letta_v1_agent": _LETTA_V1_TOOLS,
    "react_agent": (),
    "workflow_agent": (),
    "sleeptime_agent": ("memory_replace", "memory_insert", "memory_rethink", "memory_finish_edits"),
    # The contract gives no set for these; they get the default agent type's.
    "split_thread_agent": _LETTA_V1_TOOLS,
    "voice_convo_agent": _LETTA_V1_TOOLS,
    "voice_sleeptime_agent": _LETTA_V1_TOOLS,
}

# Agent types whose loop ends only on send_message, so every other base tool must continue it.
_MEMGPT_STYLE = frozenset({"memgpt_agent", "memgpt_v2_agent"})


def base_tool_rules(agent_type: str) -> list[dict]:
    """The default tool rules of an agent type's base tools; a fresh list the caller may change."""
    if agent_type not in BASE_TOOLS:
        raise InvalidInput(f"Unknown agent_type '{agent_type}'")
    if agent_type not in _MEMGPT_STYLE:
        return []
    return [
        {
            "tool_name": name,
            "type": "exit_loop" if name == "send_message" else "continue_loop",
            "prompt_template": None,
        }
        for name in BASE_TOOLS[agent_type]
    ]
