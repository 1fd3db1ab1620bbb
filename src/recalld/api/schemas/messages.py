"""Messages, sends, runs and steps (contract 4, 7.1, 7.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .types import Bool, Int, JSONObject, RequestModel, ResponseModel, Text

MessageType = Literal[
    "system_message",
    "user_message",
    "assistant_message",
    "reasoning_message",
    "hidden_reasoning_message",
    "tool_call_message",
    "tool_return_message",
    "approval_request_message",
    "approval_response_message",
    "summary_message",
    "event_message",
]


class TextPart(RequestModel):
    type: Literal["text"] = "text"
    text: Text


class ImagePart(RequestModel):
    type: Literal["image"]
    source: JSONObject


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class MessageCreate(RequestModel):
    type: Literal["message"] | None = "message"
    role: Literal["user", "system", "assistant"]
    content: Text | list[ContentPart]
    name: Text | None = None
    otid: Annotated[Text, Field(max_length=255)] | None = None
    sender_id: Text | None = None
    group_id: Text | None = None
    batch_item_id: Text | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> MessageCreate:
        if isinstance(self.content, list) and not self.content:
            raise ValueError("content must not be an empty list")
        return self


class SendBase(RequestModel):
    messages: list[MessageCreate] | None = None
    input: Text | list[ContentPart] | None = None
    max_steps: Int = Field(default=50, ge=1, le=10_000)
    include_return_message_types: list[MessageType] | None = None
    use_assistant_message: Bool = True
    assistant_message_tool_name: Text = "send_message"
    assistant_message_tool_kwarg: Text = "message"
    enable_thinking: Text | None = None
    override_system: Text | None = Field(default=None, alias="system")
    client_tools: list[JSONObject] | None = None

    model_config = {"extra": "ignore", "populate_by_name": True}

    @model_validator(mode="after")
    def _one_of_messages_or_input(self) -> SendBase:
        if (self.messages is None) == (self.input is None):
            raise ValueError("give exactly one of 'messages' or 'input'")
        if self.messages is not None and not self.messages:
            raise ValueError("Messages must not be empty")
        return self

    def inputs(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        content = self.input if isinstance(self.input, str) else [p.model_dump() for p in self.input or []]
        return [{"role": "user", "content": content}]


class SendRequestBody(SendBase):
    streaming: Bool = False
    stream_tokens: Bool = False
    include_pings: Bool = True
    background: Bool = False

    @model_validator(mode="after")
    def _streaming_options(self) -> SendRequestBody:
        if not self.streaming and (self.stream_tokens or not self.include_pings or self.background):
            raise ValueError("Streaming options set without streaming enabled; set streaming=true")
        return self


class StreamRequestBody(SendBase):
    stream_tokens: Bool = False
    include_pings: Bool = True
    background: Bool = False


class AsyncRequestBody(SendBase):
    callback_url: Annotated[Text, Field(max_length=2048)] | None = None


class CancelBody(RequestModel):
    run_ids: list[Text] | None = None


class LettaMessage(ResponseModel):
    """One item of a response, a listing or a stream; `message_type` says which fields it carries."""

    id: str
    date: str
    message_type: str
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    step_id: str | None = None
    is_err: bool | None = None
    seq_id: int | None = None
    run_id: str | None = None
    content: Any = None
    reasoning: str | None = None
    source: str | None = None
    signature: str | None = None
    tool_call: dict | None = None
    tool_calls: Any = None
    tool_return: str | None = None
    status: str | None = None
    tool_call_id: str | None = None
    stdout: list[str] | None = None  # a tool's captured output, as Letta shapes it
    stderr: list[str] | None = None
    tool_returns: list[dict] | None = None


class StopReason(ResponseModel):
    message_type: Literal["stop_reason"] = "stop_reason"
    stop_reason: str


class UsageStatistics(ResponseModel):
    message_type: Literal["usage_statistics"] = "usage_statistics"
    completion_tokens: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    step_count: int = 0
    run_ids: list[str] | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    context_tokens: int | None = None


class LettaResponse(ResponseModel):
    messages: list[LettaMessage]
    stop_reason: StopReason
    usage: UsageStatistics
    logprobs: Any = None
    turns: Any = None


class Run(ResponseModel):
    id: str
    agent_id: str
    status: str
    created_at: datetime | None = None
    completed_at: datetime | None = None
    conversation_id: str | None = None
    base_template_id: str | None = None
    background: bool | None = None
    metadata: dict | None = None
    request_config: dict | None = None
    stop_reason: str | None = None
    callback_url: str | None = None
    callback_sent_at: datetime | None = None
    callback_status_code: int | None = None
    callback_error: str | None = None
    ttft_ns: int | None = None
    total_duration_ns: int | None = None


class RunUsage(ResponseModel):
    completion_tokens: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict | None = None
    completion_tokens_details: dict | None = None


class Step(ResponseModel):
    id: str
    origin: str | None = None
    run_id: str | None = None
    agent_id: str | None = None
    provider_name: str | None = None
    model: str | None = None
    model_handle: str | None = None
    model_endpoint: str | None = None
    context_window_limit: int | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    total_tokens: int | None = None
    status: str | None = None
    stop_reason: str | None = None
    created_at: datetime | None = None
