"""Anthropic Messages API (`POST {base}/messages`), spoken from the OpenAI-form prompt recalld keeps.

The prompt is translated on the way out: system messages become the top-level `system`, assistant tool calls
become `tool_use` blocks, `tool` messages become `tool_result` blocks in a user turn, and consecutive turns of one
role are merged (the Messages API wants strictly alternating roles that start with a user turn).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from recalld.llm.endpoint import ProviderEndpoint
from recalld.llm.http import ProviderHTTP, ResponseTooLarge, iter_lines
from recalld.llm.retry import ProviderHTTPError, as_api_error
from recalld.llm.types import (
    ChatRequest,
    ChatResponse,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Stands in for a user turn the Messages API insists on (first turn, or a turn that would be empty).
PLACEHOLDER_USER_TEXT = "(conversation continues)"

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

# Status an `error` event of a stream stands for, so it maps like the same error before the first byte.
_ERROR_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


# --- request translation ---------------------------------------------------------------------------------
def _text(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") in ("text", None)
        )
    return str(content)


def _image_block(part: dict[str, Any]) -> dict[str, Any] | None:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        return None
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        blocks: list[dict[str, Any]] = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":
                image = _image_block(part)
                if image:
                    blocks.append(image)
            elif part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        return blocks
    text = _text(content)
    # The Messages API rejects empty text blocks.
    return [{"type": "text", "text": text}] if text else []


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        blocks.append({
            "type": "tool_use",
            "id": call.get("id") or f"toolu_{i}",
            "name": fn.get("name") or "",
            "input": _tool_input(fn.get("arguments")),
        })
    return blocks


def _tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id") or ""}
    content = _text(message.get("content"))
    if content:  # an empty result goes without content rather than as an empty text
        block["content"] = content
    return block


def translate_messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system, messages) for the Messages API from OpenAI chat-completions messages."""
    system_parts: list[str] = []
    turns: list[dict[str, Any]] = []  # {"role", "content": [blocks]}, merged as they come

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"))
            if text:
                system_parts.append(text)
        elif role == "assistant":
            add("assistant", _assistant_blocks(message))
        elif role in ("tool", "function"):
            add("user", [_tool_result_block(message)])
        else:
            add("user", _user_blocks(message.get("content")))

    _fix_tool_results(turns)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": PLACEHOLDER_USER_TEXT}]})
    system = "\n\n".join(system_parts) or None
    return system, turns


def _fix_tool_results(turns: list[dict[str, Any]]) -> None:
    """Tool results first in their user turn, and only for tool_use ids of the assistant turn just before.

    A result whose call is not in the previous turn (e.g. the call was evicted) would be a 400; it goes in as text.
    """
    for i, turn in enumerate(turns):
        if turn["role"] != "user":
            continue
        previous = turns[i - 1] if i > 0 else None
        called = {b.get("id") for b in (previous or {}).get("content", []) if b.get("type") == "tool_use"}
        results, others = [], []
        for block in turn["content"]:
            if block.get("type") != "tool_result":
                others.append(block)
            elif block.get("tool_use_id") in called:
                results.append(block)
            else:
                others.append({"type": "text",
                               "text": f"[result of tool call {block.get('tool_use_id')}]: {block.get('content', '')}"})
        turn["content"] = results + others


def translate_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type") == "function" or "function" in tool else tool
        fn = fn or {}
        entry: dict[str, Any] = {
            "name": fn.get("name") or "",
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def translate_tool_choice(choice: str | dict | None, parallel: bool) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        result: dict[str, Any] = {"type": "tool", "name": name} if name else {"type": "auto"}
    elif choice == "required" or choice == "any":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        result = {"type": "auto"}
    if not parallel:
        result["disable_parallel_tool_use"] = True
    return result


# --- response translation --------------------------------------------------------------------------------
def _usage(raw: dict | None, usage: Usage | None = None) -> Usage:
    """Anthropic usage into recalld's; prompt tokens count cached reads and writes too, as OpenAI's do.

    Stream events carry partial usage (message_start, then message_delta), so fields update `usage` in place.
    """
    raw = raw or {}
    usage = usage or Usage()
    if raw.get("cache_read_input_tokens") is not None:
        usage.cached_input_tokens = int(raw["cache_read_input_tokens"])
    if raw.get("cache_creation_input_tokens") is not None:
        usage.cache_write_tokens = int(raw["cache_creation_input_tokens"])
    if raw.get("input_tokens") is not None:
        usage.prompt_tokens = (int(raw["input_tokens"]) + (usage.cached_input_tokens or 0)
                               + (usage.cache_write_tokens or 0))
    if raw.get("output_tokens") is not None:
        usage.completion_tokens = int(raw["output_tokens"])
    return usage


def _finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return _STOP_REASONS.get(stop_reason, stop_reason)


class AnthropicChatClient(ProviderEndpoint):
    def __init__(self, http: ProviderHTTP, *, provider_name: str, base_url: str, api_key: str | None,
                 timeout_s: float, max_retries: int = 2, **endpoint_options: Any):
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(http, provider_name=provider_name, url=base_url.rstrip("/") + "/messages",
                         headers=headers, timeout_s=timeout_s, max_retries=max_retries, **endpoint_options)

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        system, messages = translate_messages(request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = translate_tools(request.tools)
            body["tool_choice"] = translate_tool_choice(request.tool_choice, request.parallel_tool_calls)
        if request.temperature is not None:
            # Anthropic's range is 0..1 (OpenAI's 0..2).
            body["temperature"] = max(0.0, min(1.0, float(request.temperature)))
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: ChatRequest) -> ChatResponse:
        body = orjson.dumps(self._body(request, stream=False))

        data = await self.post_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise self.malformed("response: no content")
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                text_parts.append(block.get("text") or "")
            elif kind == "thinking":
                reasoning_parts.append(block.get("thinking") or "")
            elif kind == "tool_use":
                calls.append(ToolCall(id=block.get("id") or f"toolu_{len(calls)}", name=block.get("name") or "",
                                      arguments=json.dumps(block.get("input") or {})))
        return ChatResponse(
            text="".join(text_parts) or None,
            tool_calls=calls,
            finish_reason=_finish_reason(data.get("stop_reason")),
            usage=_usage(data.get("usage")),
            reasoning="".join(reasoning_parts) or None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = orjson.dumps(self._body(request, stream=True))

        response = await self.open_stream(body)
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}  # tool-call ordinal → id, name, arguments
        block_to_call: dict[int, int] = {}  # content-block index → tool-call ordinal
        finish_reason: str | None = None
        usage = Usage()
        finished = False
        try:
            async for event in _sse_events(response, self.max_response_bytes):
                kind = event.get("type")
                if kind == "message_start":
                    usage = _usage((event.get("message") or {}).get("usage"), usage)
                elif kind == "content_block_start":
                    block = event.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        ordinal = len(calls)
                        block_to_call[event.get("index", ordinal)] = ordinal
                        calls[ordinal] = {"id": block.get("id") or f"toolu_{ordinal}", "name": block.get("name") or "",
                                          "arguments": ""}
                        yield ToolCallDelta(index=ordinal, id=calls[ordinal]["id"], name=calls[ordinal]["name"])
                        if block.get("input"):  # some proxies send the whole input up front
                            arguments = json.dumps(block["input"])
                            calls[ordinal]["arguments"] += arguments
                            yield ToolCallDelta(index=ordinal, arguments=arguments)
                    elif block.get("type") == "text" and block.get("text"):
                        text_parts.append(block["text"])
                        yield TextDelta(block["text"])
                    elif block.get("type") == "thinking" and block.get("thinking"):
                        reasoning_parts.append(block["thinking"])
                        yield ReasoningDelta(block["thinking"])
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    dtype = delta.get("type")
                    if dtype == "text_delta" and delta.get("text"):
                        text_parts.append(delta["text"])
                        yield TextDelta(delta["text"])
                    elif dtype == "thinking_delta" and delta.get("thinking"):
                        reasoning_parts.append(delta["thinking"])
                        yield ReasoningDelta(delta["thinking"])
                    elif dtype == "input_json_delta" and delta.get("partial_json"):
                        ordinal = block_to_call.get(event.get("index", -1))
                        if ordinal is not None:
                            calls[ordinal]["arguments"] += delta["partial_json"]
                            yield ToolCallDelta(index=ordinal, arguments=delta["partial_json"])
                elif kind == "message_delta":
                    stop_reason = (event.get("delta") or {}).get("stop_reason")
                    if stop_reason:
                        finish_reason = _finish_reason(stop_reason)
                    usage = _usage(event.get("usage"), usage)
                elif kind == "message_stop":
                    finished = True
                    break
                elif kind == "error":
                    error = event.get("error") or {}
                    status = _ERROR_EVENT_STATUS.get(str(error.get("type")), 500)
                    message = self.reason(error.get("message") or error.get("type"))
                    raise as_api_error(self.provider_name, ProviderHTTPError(status, message))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise as_api_error(self.provider_name, e) from e
        except ValueError as e:  # the decoder's message quotes the event: name only what failed
            raise self.malformed(f"stream event ({type(e).__name__})") from e
        finally:
            response.release()
        if not finished and finish_reason is None:
            raise as_api_error(self.provider_name, ValueError("the stream ended before message_stop"))
        yield ChatResponse(
            text="".join(text_parts) or None,
            tool_calls=[ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
                        for _, c in sorted(calls.items())],
            finish_reason=finish_reason,
            usage=usage,
            reasoning="".join(reasoning_parts) or None,
        )


async def _sse_events(response: aiohttp.ClientResponse, max_event_bytes: int) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream (`data:` lines joined per event), each at most
    max_event_bytes."""
    data: list[str] = []
    size = 0
    async for line in iter_lines(response, max_event_bytes):
        if not line:
            if data:
                payload = "\n".join(data)
                data = []
                size = 0
                event = json.loads(payload)
                if isinstance(event, dict):
                    yield event
            continue
        if line.startswith("data:"):
            value = line[5:]
            size += len(value)
            if size > max_event_bytes:
                raise ResponseTooLarge(f"a streamed event is over the {max_event_bytes}-byte limit")
            data.append(value[1:] if value.startswith(" ") else value)
        # `event:` names repeat the payload's `type`; comments (`:`) and other fields are ignored.
    if data:
        event = json.loads("\n".join(data))
        if isinstance(event, dict):
            yield event
