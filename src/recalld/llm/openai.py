"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from recalld.llm.endpoint import ProviderEndpoint
from recalld.llm.http import ProviderHTTP, iter_lines
from recalld.llm.retry import as_api_error
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


def _usage(raw: dict | None) -> Usage:
    raw = raw or {}
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_input_tokens=prompt_details.get("cached_tokens"),
        reasoning_tokens=completion_details.get("reasoning_tokens"),
    )


class OpenAIChatClient(ProviderEndpoint):
    def __init__(
        self,
        http: ProviderHTTP,
        *,
        provider_name: str,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        max_retries: int = 2,
        **endpoint_options: Any,
    ):
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        super().__init__(http, provider_name=provider_name, url=base_url.rstrip("/") + "/chat/completions",
                         headers=headers, timeout_s=timeout_s, max_retries=max_retries, **endpoint_options)

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": request.messages}
        if request.tools:
            body["tools"] = request.tools
            body["tool_choice"] = request.tool_choice or "auto"
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.max_tokens:
            body["max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: ChatRequest) -> ChatResponse:
        # orjson both ways: the prompt is re-encoded every step and is the largest thing a turn serialises.
        body = orjson.dumps(self._body(request, stream=False))

        data = await self.post_json(body)
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError) as e:
            raise self.malformed("response: no choices") from e
        calls = [
            ToolCall(
                id=c.get("id") or f"call_{i}",
                name=(c.get("function") or {}).get("name") or "",
                arguments=(c.get("function") or {}).get("arguments") or "",
            )
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        return ChatResponse(
            text=message.get("content"),
            tool_calls=calls,
            finish_reason=choice.get("finish_reason"),
            usage=_usage(data.get("usage")),
            reasoning=message.get("reasoning_content") or message.get("reasoning"),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = orjson.dumps(self._body(request, stream=True))

        response = await self.open_stream(body)
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason = None
        usage = Usage()
        try:
            async for line in iter_lines(response, self.max_response_bytes):
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):  # an error reported mid-stream (after the 200 went out)
                    error = chunk["error"]
                    message = error.get("message") if isinstance(error, dict) else error
                    reason = self.reason(message)
                    raise as_api_error(self.provider_name, ValueError(f"stream error: {reason or 'no reason given'}"))
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if reasoning:
                        reasoning_parts.append(reasoning)
                        yield ReasoningDelta(reasoning)
                    if delta.get("content"):
                        text_parts.append(delta["content"])
                        yield TextDelta(delta["content"])
                    for tc in delta.get("tool_calls") or []:
                        index = tc.get("index", 0)
                        slot = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                        fn = tc.get("function") or {}
                        if tc.get("id"):
                            slot["id"] = tc["id"]
                        if fn.get("name"):
                            slot["name"] += fn["name"]
                        if fn.get("arguments"):
                            slot["arguments"] += fn["arguments"]
                        yield ToolCallDelta(
                            index=index, id=tc.get("id"), name=fn.get("name"), arguments=fn.get("arguments")
                        )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise as_api_error(self.provider_name, e) from e
        except ValueError as e:  # the decoder's message quotes the chunk: name only what failed
            raise self.malformed(f"stream chunk ({type(e).__name__})") from e
        finally:
            response.release()
        yield ChatResponse(
            text="".join(text_parts) or None,
            tool_calls=[
                ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
                for i, c in sorted(calls.items())
            ],
            finish_reason=finish_reason,
            usage=usage,
            reasoning="".join(reasoning_parts) or None,
        )
