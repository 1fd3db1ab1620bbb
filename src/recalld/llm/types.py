"""The provider-neutral shape of a chat call: what the agent loop sends and gets back.

Prompts are kept in OpenAI chat-completions form (system/user/assistant/tool messages, function tools);
the Anthropic client translates. Streaming yields deltas and ends with the complete response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it (it may not parse)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)  # [{"type":"function","function":{...}}]
    tool_choice: str | dict | None = None  # "auto" | "required" | {"type":"function","function":{"name":…}}
    max_tokens: int | None = None
    temperature: float | None = None
    parallel_tool_calls: bool = False


@dataclass(slots=True)
class ChatResponse:
    text: str | None
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage
    reasoning: str | None = None


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of the tool call at `index`: the id and name arrive first, arguments in fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | ChatResponse


class ChatClient(Protocol):
    """One provider protocol (OpenAI-compatible or Anthropic) at one endpoint."""

    provider_name: str

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Deltas as they arrive, then the complete ChatResponse as the last item."""
        ...
