"""The chat clients (OpenAI-compatible and Anthropic) against the scripted fakes over real HTTP.

Every behaviour test runs for both protocols; what went over the wire is read back from the fake's `.requests`
and from the client session's own trace of what it sent. Provider behaviour the fakes do not script (flaky
upstreams, canned event streams, stalls) comes from small aiohttp servers on loopback.
Backoff is shrunk (except where Retry-After itself is under test) so retries cost milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from recalld.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from recalld.llm import retry
from recalld.llm.anthropic import (
    PLACEHOLDER_USER_TEXT,
    AnthropicChatClient,
    translate_messages,
    translate_tool_choice,
    translate_tools,
)
from recalld.llm.http import ProviderHTTP
from recalld.llm.openai import OpenAIChatClient
from recalld.llm.types import ChatRequest, ChatResponse, ReasoningDelta, TextDelta, ToolCallDelta
from tests.fakes.llm_anthropic import ScriptedAnthropic
from tests.fakes.llm_openai import ScriptedOpenAI, ScriptedServer
from tests.servers import free_port

OPENAI_KEY = "sk-openai-test-secret"
ANTHROPIC_KEY = "sk-ant-test-secret"
SYSTEM = "You are a terse test assistant."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

Client = OpenAIChatClient | AnthropicChatClient


# --- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def openai_server():
    with ScriptedOpenAI(models=("gpt-4o-mini",), api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def anthropic_server():
    with ScriptedAnthropic(models=("claude-3-5-haiku-20241022",), api_key=ANTHROPIC_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(retry, "MAX_BACKOFF_S", 0.01)


@dataclass
class Sent:
    """A request as the client put it on the wire."""

    method: str
    url: URL
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    content: bytearray = field(default_factory=bytearray)


def recording(sent: list[Sent]) -> aiohttp.TraceConfig:
    """A trace that appends every request the session sends (each try of a retried call) to `sent`."""

    async def on_start(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        ctx.sent = Sent(params.method, params.url)
        sent.append(ctx.sent)

    async def on_headers(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams) -> None:
        ctx.sent.headers = params.headers

    async def on_chunk(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams) -> None:
        ctx.sent.content += params.chunk

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_headers_sent.append(on_headers)
    trace.on_request_chunk_sent.append(on_chunk)
    return trace


@dataclass
class Kit:
    """One protocol under test: its fake, a model it serves, and how to build a client for it."""

    kind: str
    server: ScriptedServer
    model: str
    sent: list[Sent]  # every request the client put on the wire, retries included

    def client(
        self,
        http: ProviderHTTP,
        *,
        timeout_s: float = 5.0,
        max_retries: int = 1,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> Client:
        cls = OpenAIChatClient if self.kind == "openai" else AnthropicChatClient
        key = api_key or (OPENAI_KEY if self.kind == "openai" else ANTHROPIC_KEY)
        return cls(
            http,
            provider_name=self.kind,
            base_url=base_url or self.server.base_url,
            api_key=key,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )

    def request(self, text: str, **kw: Any) -> ChatRequest:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        return ChatRequest(model=self.model, messages=messages, **kw)


@pytest.fixture(params=["openai", "anthropic"])
async def kit(request, openai_server, anthropic_server):
    server = openai_server if request.param == "openai" else anthropic_server
    model = "gpt-4o-mini" if request.param == "openai" else "claude-3-5-haiku-20241022"
    server.reset()
    return Kit(request.param, server, model, [])


@pytest.fixture
async def http(kit):
    http = ProviderHTTP(trace_configs=[recording(kit.sent)])
    yield http
    await http.aclose()


def tokens(n_chars: int) -> int:  # the fakes' token estimate
    return max(1, n_chars // 4)


async def collect(client: Client, request: ChatRequest) -> tuple[list[Any], ChatResponse]:
    events = [e async for e in client.stream(request)]
    assert isinstance(events[-1], ChatResponse)
    assert not any(isinstance(e, ChatResponse) for e in events[:-1])
    return events[:-1], events[-1]


def follow_up(request: ChatRequest, response: ChatResponse, result: str) -> ChatRequest:
    """The request that sends the tool results of `response` back, as the agent loop does."""
    assistant = {
        "role": "assistant",
        "content": response.text,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in response.tool_calls
        ],
    }
    tools = [{"role": "tool", "tool_call_id": c.id, "content": result} for c in response.tool_calls]
    return ChatRequest(
        model=request.model,
        messages=[*request.messages, assistant, *tools],
        tools=request.tools,
        tool_choice=request.tool_choice,
    )


# --- replies -----------------------------------------------------------------------------------------------
async def test_plain_reply(kit, http):
    response = await kit.client(http).complete(kit.request("hello there"))
    assert response.text == "ack hello there"
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.reasoning is None
    # The fakes count a token per 4 bytes of the request body and of the reply.
    assert response.usage.prompt_tokens == tokens(len(kit.sent[0].content))
    reply_chars = len("ack hello there") + (len('""') if kit.kind == "anthropic" else 0)
    assert response.usage.completion_tokens == tokens(reply_chars)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


async def test_tool_call_round_trip(kit, http):
    client = kit.client(http)
    request = kit.request('CALL get_weather {"city": "Paris"}', tools=[WEATHER_TOOL], tool_choice="auto")
    first = await client.complete(request)
    assert first.finish_reason == "tool_calls"
    assert [c.name for c in first.tool_calls] == ["get_weather"]
    assert json.loads(first.tool_calls[0].arguments) == {"city": "Paris"}
    assert first.tool_calls[0].id

    second = await client.complete(follow_up(request, first, '{"status": "OK", "message": "sunny"}'))
    assert second.text == "done get_weather"
    assert second.tool_calls == []
    assert second.finish_reason == "stop"


async def test_stream_text(kit, http):
    events, final = await collect(kit.client(http), kit.request("the quick brown fox"))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == final.text == "ack the quick brown fox"
    assert final.finish_reason == "stop"
    assert final.tool_calls == []
    assert final.usage.prompt_tokens == tokens(len(kit.sent[0].content))
    reply_chars = len("ack the quick brown fox") + (len('""') if kit.kind == "anthropic" else 0)
    assert final.usage.completion_tokens == tokens(reply_chars)
    assert kit.server.requests[-1]["stream"] is True


async def test_stream_tool_call_and_round_trip(kit, http):
    client = kit.client(http)
    args = {"city": "Paris", "units": "metric", "days": 3}
    request = kit.request(f"CALL get_weather {json.dumps(args)}", tools=[WEATHER_TOOL], tool_choice="auto")
    events, final = await collect(client, request)
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].id and calls[0].name == "get_weather"
    assert {c.index for c in calls} == {0}
    assert len([c for c in calls if c.arguments]) > 1  # the arguments arrive in fragments
    assert "".join(c.arguments or "" for c in calls) == final.tool_calls[0].arguments
    assert json.loads(final.tool_calls[0].arguments) == args
    assert final.tool_calls[0].id == calls[0].id
    assert final.finish_reason == "tool_calls"
    assert final.text is None

    events, final = await collect(client, follow_up(request, final, "sunny"))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.text == "done get_weather"


# --- the wire ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kit", ["openai"], indirect=True)
async def test_openai_wire(kit, http):
    client = kit.client(http)
    request = kit.request(
        "CALL get_weather {}", tools=[WEATHER_TOOL], tool_choice="required", max_tokens=77, temperature=0.3
    )
    await client.complete(request)
    body = kit.server.requests[-1]
    assert body["messages"] == request.messages
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert body["max_completion_tokens"] == 77
    assert body["temperature"] == 0.3
    assert "stream" not in body
    assert kit.sent[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"

    [e async for e in client.stream(kit.request("hi"))]
    assert kit.server.requests[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kit", ["anthropic"], indirect=True)
async def test_anthropic_wire(kit, http):
    client = kit.client(http)
    request = kit.request('CALL get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL], tool_choice="required")
    request.messages.insert(1, {"role": "system", "content": "Second system part."})
    first = await client.complete(request)
    body = kit.server.requests[-1]
    assert body["system"] == SYSTEM + "\n\nSecond system part."
    said = request.messages[-1]["content"]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": said}]}]
    assert body["max_tokens"] == 4096  # required by Anthropic; the default when the request has none
    assert "temperature" not in body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    headers = kit.sent[-1].headers
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert kit.sent[-1].url.path == "/v1/messages"

    # A memgpt-style step: tool result, then a heartbeat user message, with a forced tool and limits.
    second = follow_up(request, first, '{"status": "OK"}')
    second.messages.append({"role": "user", "content": '{"type": "heartbeat"}'})
    second.tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    second.max_tokens = 123
    second.temperature = 0.5
    response = await client.complete(second)
    assert response.text == "done get_weather"
    body = kit.server.requests[-1]
    assert "system" in body and all(m["role"] != "system" for m in body["messages"])
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    call = first.tool_calls[0]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": '{"status": "OK"}'},
        {"type": "text", "text": '{"type": "heartbeat"}'},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert body["max_tokens"] == 123
    assert body["temperature"] == 0.5


def test_anthropic_message_translation():
    messages = [
        {"role": "system", "content": "S1"},
        {
            "role": "assistant",
            "content": "I start.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{not json"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "r2"}]},
        {"role": "system", "content": [{"type": "text", "text": "S2"}]},
        {"role": "user", "content": "u1"},
        {"role": "user", "content": ""},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "u2"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "content": "a1"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c3", "type": "function", "function": {"name": "c", "arguments": "[1, 2]"}}],
        },
        {"role": "tool", "tool_call_id": "gone", "content": "orphan"},
        {"role": "tool", "tool_call_id": "c3", "content": ""},
    ]
    system, out = translate_messages(messages)
    assert system == "S1\n\nS2"
    assert [m["role"] for m in out] == ["user", "assistant", "user", "assistant", "user"]
    assert out[0]["content"] == [{"type": "text", "text": PLACEHOLDER_USER_TEXT}]  # must start with a user turn
    assert out[1]["content"] == [
        {"type": "text", "text": "I start."},
        {"type": "tool_use", "id": "c1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "c2", "name": "b", "input": {}},  # unparsable arguments
    ]
    assert out[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
        {"type": "tool_result", "tool_use_id": "c2", "content": "r2"},
        {"type": "text", "text": "u1"},
        {"type": "text", "text": "u2"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
    ]
    assert out[3]["content"] == [
        {"type": "text", "text": "a1"},
        {"type": "tool_use", "id": "c3", "name": "c", "input": {}},  # not an object
    ]
    # Results lead their turn; one whose call is not in the previous turn goes in as text.
    assert out[4]["content"] == [
        {"type": "tool_result", "tool_use_id": "c3"},
        {"type": "text", "text": "[result of tool call gone]: orphan"},
    ]

    assert translate_messages([{"role": "system", "content": "only"}]) == (
        "only",
        [{"role": "user", "content": [{"type": "text", "text": PLACEHOLDER_USER_TEXT}]}],
    )


def test_anthropic_tools_and_choice():
    bare = {"type": "function", "function": {"name": "noop"}}
    assert translate_tools([WEATHER_TOOL, bare])[1] == {
        "name": "noop",
        "input_schema": {"type": "object", "properties": {}},
    }
    assert translate_tool_choice("auto", True) == {"type": "auto"}
    assert translate_tool_choice(None, False) == {"type": "auto", "disable_parallel_tool_use": True}
    assert translate_tool_choice("required", True) == {"type": "any"}
    assert translate_tool_choice("none", False) == {"type": "none"}
    assert translate_tool_choice({"type": "function", "function": {"name": "x"}}, True) == {"type": "tool", "name": "x"}


# --- failures ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("streaming", [False, True])
async def test_rate_limited_after_retries(kit, http, streaming):
    client = kit.client(http, max_retries=2)
    request = kit.request("FAIL 429")
    with pytest.raises(ProviderRateLimited) as info:
        if streaming:
            [e async for e in client.stream(request)]
        else:
            await client.complete(request)
    assert len(kit.server.requests) == 3  # the first try and two retries
    err = info.value
    assert err.status_code == 429
    assert err.headers == {"Retry-After": "1"}
    assert err.detail == f"{kit.kind} returned 429: scripted failure 429"


async def test_retry_after_is_honoured(kit, http, monkeypatch):
    monkeypatch.setattr(retry, "MAX_BACKOFF_S", 8.0)
    started = time.monotonic()
    with pytest.raises(ProviderRateLimited):
        await kit.client(http, max_retries=1).complete(kit.request("FAIL 429"))
    assert time.monotonic() - started >= 0.95  # the fakes say Retry-After: 1
    assert len(kit.server.requests) == 2


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_error_retried_then_mapped(kit, http, status):
    with pytest.raises(ProviderError) as info:
        await kit.client(http, max_retries=1).complete(kit.request(f"FAIL {status}"))
    assert type(info.value) is ProviderError
    assert info.value.status_code == 502
    assert info.value.detail == f"{kit.kind} returned {status}: scripted failure {status}"
    assert len(kit.server.requests) == 2


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A real HTTP server on loopback that answers every request with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    # Cancel a handler whose client hung up (a stalled stream), and do not wait long for handlers at the end.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


class Flaky:
    """A proxy in front of a provider: answers the first `failures` requests itself with `status`, then
    forwards requests to `upstream` and relays its answers."""

    def __init__(self, upstream: str, failures: int, status: int = 503):
        self.upstream = upstream
        self.failures = failures
        self.status = status
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        if self.calls <= self.failures:
            return web.json_response({"error": {"message": "flaky upstream"}}, status=self.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = self.upstream.removesuffix("/v1") + request.path
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
            return web.Response(status=answer.status, body=await answer.read(), content_type=answer.content_type)


@pytest.mark.parametrize("streaming", [False, True])
async def test_server_error_retried_then_succeeds(kit, http, streaming):
    flaky = Flaky(kit.server.base_url, failures=2, status=500)
    async with serving(flaky.handle) as base_url:
        client = kit.client(http, max_retries=2, base_url=base_url)
        if streaming:
            _, response = await collect(client, kit.request("again"))
        else:
            response = await client.complete(kit.request("again"))
    assert response.text == "ack again"
    assert flaky.calls == 3 == len(kit.sent)
    assert len(kit.server.requests) == 1  # only the third try reached the provider


async def test_out_of_retries_reports_the_last_failure(kit, http):
    flaky = Flaky(kit.server.base_url, failures=5, status=502)
    async with serving(flaky.handle) as base_url:
        with pytest.raises(ProviderError) as info:
            await kit.client(http, max_retries=1, base_url=base_url).complete(kit.request("never"))
    assert info.value.detail == f"{kit.kind} returned 502: flaky upstream"
    assert flaky.calls == 2
    assert kit.server.requests == []


@pytest.mark.parametrize("streaming", [False, True])
async def test_timeout(kit, http, streaming):
    client = kit.client(http, timeout_s=0.15, max_retries=0)
    request = kit.request("SLOW 600")
    with pytest.raises(ProviderTimeout) as info:
        if streaming:
            [e async for e in client.stream(request)]
        else:
            await client.complete(request)
    assert info.value.status_code == 504
    assert kit.kind in info.value.detail
    assert len(kit.server.requests) == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_bad_request_is_not_retried(kit, http, streaming):
    client = kit.client(http, max_retries=2)
    request = kit.request("FAIL 400")
    with pytest.raises(ProviderError) as info:
        if streaming:
            [e async for e in client.stream(request)]
        else:
            await client.complete(request)
    assert type(info.value) is ProviderError
    assert info.value.status_code == 502
    assert info.value.detail == f"{kit.kind} returned 400: scripted failure 400"
    assert len(kit.server.requests) == 1


async def test_unknown_model_names_the_provider_message(kit, http):
    request = kit.request("hi")
    request.model = "no-such-model"
    with pytest.raises(ProviderError) as info:
        await kit.client(http).complete(request)
    assert info.value.detail.startswith(f"{kit.kind} returned 404: ")
    assert "no-such-model" in info.value.detail
    assert len(kit.server.requests) == 1


async def test_wrong_key_never_leaks(kit, http):
    wrong = "sk-wrong-key-do-not-print"
    with pytest.raises(ProviderError) as info:
        await kit.client(http, api_key=wrong).complete(kit.request("hi"))
    assert info.value.status_code == 502
    assert info.value.detail.startswith(f"{kit.kind} returned 401: ")
    assert wrong not in info.value.detail and wrong not in str(info.value)


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused(kit, http, streaming):
    client = kit.client(http, base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    request = kit.request("hi")
    with pytest.raises(ProviderError) as info:
        if streaming:
            [e async for e in client.stream(request)]
        else:
            await client.complete(request)
    assert type(info.value) is ProviderError
    assert info.value.detail == f"{kit.kind} could not be reached: ClientConnectorError"
    assert len(kit.sent) == 2  # retried once


def use_proxy_env(monkeypatch, **env: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("no_proxy", "proxied"), [("", True), ("127.0.0.1", False)])
async def test_proxy_of_the_environment_is_used_unless_no_proxy_names_the_host(
    openai_server, monkeypatch, no_proxy, proxied
):
    proxy = Flaky(openai_server.base_url, failures=0)  # a forwarding proxy that fails nothing
    async with serving(proxy.handle) as proxy_url:
        use_proxy_env(monkeypatch, http_proxy=proxy_url.removesuffix("/v1"), no_proxy=no_proxy)
        http = ProviderHTTP()
        try:
            client = OpenAIChatClient(
                http, provider_name="openai", base_url=openai_server.base_url, api_key=OPENAI_KEY, timeout_s=5
            )
            response = await client.complete(
                ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            )
        finally:
            await http.aclose()
    assert response.text == "ack hi"
    assert proxy.calls == (1 if proxied else 0)


# --- provider features the fakes do not script (canned HTTP answers) -------------------------------------
@dataclass
class Canned:
    """A server that answers every request alike, and a session to reach it with."""

    http: ProviderHTTP
    base_url: str


@asynccontextmanager
async def canned(
    body: str | bytes | dict, status: int = 200, content_type: str = "text/event-stream"
) -> AsyncIterator[Canned]:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        if isinstance(body, dict):
            return web.json_response(body, status=status)
        data = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=data, headers={"Content-Type": content_type})

    async with serving(handler) as base_url:
        http = ProviderHTTP()
        try:
            yield Canned(http, base_url)
        finally:
            await http.aclose()


def sse(*events: dict, named: bool = True) -> str:
    return "".join((f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n" for e in events)


def anthropic_client(provider: Canned, timeout_s: float = 1) -> AnthropicChatClient:
    return AnthropicChatClient(
        provider.http,
        provider_name="anthropic",
        base_url=provider.base_url,
        api_key="k",
        timeout_s=timeout_s,
        max_retries=0,
    )


def openai_client(provider: Canned, timeout_s: float = 1) -> OpenAIChatClient:
    return OpenAIChatClient(
        provider.http,
        provider_name="openai",
        base_url=provider.base_url,
        api_key="k",
        timeout_s=timeout_s,
        max_retries=0,
    )


def simple_request(model: str = "m") -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}])


async def test_anthropic_thinking_cache_usage_and_tool_blocks():
    usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
    events = sse(
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "let me "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Calling."}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_a", "name": "a", "input": {}},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"x"'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "toolu_b", "name": "b", "input": {}},
        },
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 42}},
        {"type": "message_stop"},
    )
    async with canned(events) as provider:
        out, final = await collect(anthropic_client(provider), simple_request())
    assert [e for e in out if isinstance(e, ReasoningDelta)] == [ReasoningDelta("let me "), ReasoningDelta("think")]
    assert [e for e in out if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(index=0, id="toolu_a", name="a"),
        ToolCallDelta(index=0, arguments='{"x"'),
        ToolCallDelta(index=0, arguments=": 1}"),
        ToolCallDelta(index=1, id="toolu_b", name="b"),
    ]
    assert final.reasoning == "let me think"
    assert final.text == "Calling."
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [
        ("toolu_a", "a", '{"x": 1}'),
        ("toolu_b", "b", "{}"),
    ]
    assert final.finish_reason == "length"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (130, 42)
    assert (final.usage.cached_input_tokens, final.usage.cache_write_tokens) == (100, 20)

    message = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "stop_reason": "end_turn",
        "usage": usage,
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "toolu_c", "name": "c", "input": {"y": [1]}},
        ],
    }
    async with canned(message) as provider:
        response = await anthropic_client(provider).complete(simple_request())
    assert (response.reasoning, response.text) == ("hmm", "Hello")
    assert json.loads(response.tool_calls[0].arguments) == {"y": [1]}
    assert response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.cached_input_tokens) == (130, 100)


@pytest.mark.parametrize(
    ("error_type", "expected", "status"),
    [("overloaded_error", ProviderError, 529), ("rate_limit_error", ProviderRateLimited, 429)],
)
async def test_anthropic_error_event_mid_stream(error_type, expected, status):
    events = sse(
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}},
        {"type": "error", "error": {"type": error_type, "message": "Overloaded"}},
        named=False,
    )
    received: list[Any] = []
    async with canned(events) as provider:
        with pytest.raises(ProviderError) as info:
            async for event in anthropic_client(provider).stream(simple_request()):
                received.append(event)
    assert type(info.value) is expected
    assert info.value.detail == f"anthropic returned {status}: Overloaded"
    assert received == [TextDelta("partial")]


async def test_anthropic_truncated_stream_is_an_error():
    events = sse({"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3}}})
    async with canned(events) as provider:
        with pytest.raises(ProviderError, match="ended before message_stop"):
            [e async for e in anthropic_client(provider).stream(simple_request())]


@pytest.mark.parametrize("make", [anthropic_client, openai_client])
async def test_non_json_success_is_a_provider_error(make: Callable[[Canned], Client]):
    async with canned(b"<html>gateway</html>", content_type="text/html") as provider:
        with pytest.raises(ProviderError, match="malformed response") as info:
            await make(provider).complete(simple_request())
    assert info.value.status_code == 502


async def test_openai_error_chunk_mid_stream():
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "par"}, "finish_reason": None}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps({'error': {'message': 'model crashed'}})}\n\n"
    async with canned(body) as provider:
        with pytest.raises(ProviderError, match="model crashed"):
            [e async for e in openai_client(provider).stream(simple_request())]


# --- reading streams ----------------------------------------------------------------------------------------
# One SSE line of ~1 MB: past aiohttp's readline limit (twice its read buffer: 128 KiB or 512 KiB, by version).
LONG_TEXT = "long " * 200_000


async def test_openai_stream_reads_a_line_over_the_readline_limit():
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": LONG_TEXT}, "finish_reason": "stop"}]}
    async with canned(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n") as provider:
        events, final = await collect(openai_client(provider), simple_request())
    assert events == [TextDelta(LONG_TEXT)]
    assert final.text == LONG_TEXT


async def test_anthropic_stream_reads_a_line_over_the_readline_limit():
    arguments = json.dumps({"text": LONG_TEXT})
    events = sse(
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "a"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": arguments}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    )
    async with canned(events) as provider:
        _, final = await collect(anthropic_client(provider), simple_request())
    assert final.tool_calls[0].arguments == arguments


@pytest.mark.parametrize("make", [anthropic_client, openai_client])
async def test_stream_lines_may_end_with_crlf(make: Callable[[Canned], Client]):
    if make is openai_client:
        frames = [{"id": "c", "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in "ab"]
        body = "".join(f"data: {json.dumps(f)}\r\n\r\n" for f in frames) + "data: [DONE]\r\n\r\n"
    else:
        body = sse(
            {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3}}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "b"}},
            {"type": "message_stop"},
        ).replace("\n", "\r\n")
    async with canned(body) as provider:
        events, final = await collect(make(provider), simple_request())
    assert events == [TextDelta("a"), TextDelta("b")]
    assert final.text == "ab"


@pytest.mark.parametrize("make", [anthropic_client, openai_client])
async def test_stream_that_stalls_midway_times_out(make: Callable[[Canned], Client]):
    if make is openai_client:
        first = {"id": "c", "choices": [{"index": 0, "delta": {"content": "par"}, "finish_reason": None}]}
        opening = f"data: {json.dumps(first)}\n\n"
    else:
        opening = sse(
            {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3}}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "par"}},
        )

    async def stalling(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(opening.encode())
        await asyncio.sleep(30)  # cancelled when the client gives up
        return response

    received: list[Any] = []
    started = time.monotonic()
    async with serving(stalling) as base_url:
        provider = Canned(ProviderHTTP(), base_url)
        try:
            with pytest.raises(ProviderTimeout) as info:
                async for event in make(provider, timeout_s=0.3).stream(simple_request()):
                    received.append(event)
        finally:
            await provider.http.aclose()
    assert received == [TextDelta("par")]
    assert info.value.status_code == 504
    assert time.monotonic() - started < 5
