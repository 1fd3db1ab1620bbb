"""Dispatching a model's tool call: built-in memory tools in-process, search tools through the turn's
services, custom tools in the sandbox. Any failure is an error result for the model, never a crash."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from recalld.agent.memory_tools import MEMORY_TOOLS, Memory, ToolError

SEARCH_TOOLS = frozenset({"conversation_search", "archival_memory_search"})


class ToolServices(Protocol):
    """What the search and archival tools need from outside the loop (database, embeddings)."""

    async def conversation_search(
        self, query: str | None, roles: list[str] | None, limit: int, start_date: str | None, end_date: str | None
    ) -> Any: ...

    async def archival_insert(self, content: str, tags: list[str] | None) -> None: ...

    async def archival_search(
        self,
        query: str,
        tags: list[str] | None,
        tag_match_mode: str,
        top_k: int | None,
        start_datetime: str | None,
        end_datetime: str | None,
    ) -> Any: ...

    async def run_custom_tool(self, source: str, name: str, args: dict, pip_requirements: list | None) -> Any:
        """Run a custom tool's source in the sandbox; answers .ok, .result, .stdout and .stderr (text)."""
        ...


@dataclass
class ToolOutcome:
    ok: bool
    result: Any
    stdout: list[str] | None = None  # Letta's shape: a list of captured texts (or null)
    stderr: list[str] | None = None
    memory_changed: bool = False


def _lines(text: str | None) -> list[str] | None:
    return [text] if text else None


def _error(name: str, message: str) -> ToolOutcome:
    return ToolOutcome(False, message, None, [f"Error executing function {name}: {message}"])


def _check_args(tool: dict, args: dict) -> str | None:
    """Whether the arguments fit the tool's schema: required present, nothing unknown."""
    params = (tool.get("json_schema") or {}).get("parameters") or {}
    properties = params.get("properties") or {}
    missing = [p for p in params.get("required") or [] if p not in args]
    unknown = [a for a in args if properties and a not in properties]
    if missing:
        return f"missing required argument(s): {missing}"
    if unknown:
        return f"unexpected argument(s): {unknown}; the tool takes {sorted(properties)}"
    return None


class ToolRunner:
    def __init__(
        self,
        tools: dict[str, dict],
        memory: Memory,
        services: ToolServices,
    ):
        self.tools = tools
        self.memory = memory
        self.services = services

    async def run(self, name: str, arguments: str | dict) -> ToolOutcome:
        tool = self.tools.get(name)
        if tool is None:
            return _error(name, f"Tool '{name}' is not available to this agent; available: {sorted(self.tools)}")
        if isinstance(arguments, dict):
            args = arguments
        else:
            try:
                args = json.loads(arguments or "{}")
            except ValueError as e:
                return _error(name, f"arguments are not valid JSON ({e})")
        if not isinstance(args, dict):
            return _error(name, "arguments must be a JSON object")
        problem = _check_args(tool, args)
        if problem:
            return _error(name, problem)
        try:
            outcome = await self._dispatch(tool, name, args)
        except ToolError as e:
            return ToolOutcome(False, str(e), None, [f"Error executing function {name}: ToolError: {e}"])
        except (TypeError, ValueError) as e:
            return _error(name, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - the model sees the failure; the turn goes on
            return _error(name, f"{type(e).__name__}: {e}")
        return self._truncated(tool, name, outcome)

    async def _dispatch(self, tool: dict, name: str, args: dict) -> ToolOutcome:
        if name in MEMORY_TOOLS and tool.get("tool_type") != "custom":
            result = MEMORY_TOOLS[name](self.memory, **args)
            return ToolOutcome(True, result, memory_changed=name != "memory_finish_edits")
        if name == "send_message" and tool.get("tool_type") != "custom":
            return ToolOutcome(True, "Sent message successfully.")
        if name == "conversation_search" and tool.get("tool_type") != "custom":
            result = await self.services.conversation_search(
                args.get("query"),
                args.get("roles"),
                int(args.get("limit") or 5),
                args.get("start_date"),
                args.get("end_date"),
            )
            return ToolOutcome(True, result)
        if name == "archival_memory_insert" and tool.get("tool_type") != "custom":
            await self.services.archival_insert(args["content"], args.get("tags"))
            return ToolOutcome(True, None, memory_changed=True)
        if name == "archival_memory_search" and tool.get("tool_type") != "custom":
            result = await self.services.archival_search(
                args["query"],
                args.get("tags"),
                args.get("tag_match_mode") or "any",
                args.get("top_k"),
                args.get("start_datetime"),
                args.get("end_datetime"),
            )
            return ToolOutcome(True, result)
        if tool.get("source_code"):
            outcome = await self.services.run_custom_tool(
                tool["source_code"], name, args, tool.get("pip_requirements")
            )
            return ToolOutcome(outcome.ok, outcome.result, _lines(outcome.stdout), _lines(outcome.stderr))
        raise ToolError(f"Error: tool '{name}' has no implementation on this server")

    @staticmethod
    def _truncated(tool: dict, name: str, outcome: ToolOutcome) -> ToolOutcome:
        """Long tool output is cut to the tool's return_char_limit (search results excepted)."""
        limit = tool.get("return_char_limit") or 50_000
        if name in SEARCH_TOOLS or not isinstance(outcome.result, str) or len(outcome.result) <= limit:
            return outcome
        cut = len(outcome.result) - limit
        outcome.result = outcome.result[:limit] + f"... [truncated {cut} characters: over the tool's return limit]"
        return outcome

