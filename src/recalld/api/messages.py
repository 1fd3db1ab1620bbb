"""/v1/agents/{id}/messages: send (sync, streaming, async), list, reset, cancel (contract 4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse

from recalld.agent.convert import message_date
from recalld.api.deps import CallerDep, ServicesDep, TurnCallerDep
from recalld.api.params import AgentId, Cursor, Limit, Order, QTextList
from recalld.api.schemas.agents import AgentState
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.messages import (
    AsyncRequestBody,
    CancelBody,
    LettaMessage,
    LettaResponse,
    MessageType,
    Run,
    SendBase,
    SendRequestBody,
    StreamRequestBody,
)
from recalld.errors import InvalidInput, ProviderError, ProviderRateLimited, ProviderTimeout, RecalldError
from recalld.obs import metrics
from recalld.services.caller import Caller
from recalld.services.runs import run_view
from recalld.services.turns import SendRequest
from recalld.store.types import utcnow

router = APIRouter(tags=["messages"])

KEEPALIVE_S = 20.0
IdempotencyKey = Annotated[str | None, Header(max_length=255, description="Makes a retried send the same turn")]
_SEND_ERRORS = error_responses(400, 404, 409, 429, 502, 504)
_STREAM_RESPONSE = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "Server-sent events: the agent's messages, stop_reason, usage, [DONE]",
    }
}


def _request(
    body: SendBase,
    idempotency_key: str | None,
    *,
    stream_tokens: bool = False,
    background: bool = False,
    run_type: str = "send_message",
) -> SendRequest:
    if body.client_tools:
        # A field of a supported route, so a 4xx rather than 501: no input may cause a 5xx (R16).
        raise InvalidInput("client_tools are not supported by recalld; attach server-side tools to the agent")
    return SendRequest(
        inputs=body.inputs(),
        max_steps=body.max_steps,
        stream_tokens=stream_tokens,
        include_return_message_types=list(body.include_return_message_types or []) or None,
        override_system=body.override_system,
        idempotency_key=idempotency_key,
        background=background,
        request_config={
            "use_assistant_message": body.use_assistant_message,
            "assistant_message_tool_name": body.assistant_message_tool_name,
            "assistant_message_tool_kwarg": body.assistant_message_tool_kwarg,
            "include_return_message_types": body.include_return_message_types,
        },
    )


@router.post(
    "/v1/agents/{agent_id}/messages",
    response_model=LettaResponse,
    responses={**_SEND_ERRORS, **_STREAM_RESPONSE},
)
async def send_message(
    agent_id: AgentId,
    body: SendRequestBody,
    caller: TurnCallerDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Send messages to the agent and wait for its turn to end (or stream it with `streaming: true`)."""
    req = _request(body, idempotency_key, stream_tokens=body.stream_tokens)
    if body.streaming:
        return await _stream(services, caller, agent_id, req, include_pings=body.include_pings)
    return await services.turns.send(caller, agent_id, req)


@router.post(
    "/v1/agents/{agent_id}/messages/stream",
    response_class=StreamingResponse,
    responses={**_SEND_ERRORS, **_STREAM_RESPONSE},
)
async def stream_message(
    agent_id: AgentId,
    body: StreamRequestBody,
    caller: TurnCallerDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Send messages and receive the agent's messages as server-sent events as they happen."""
    req = _request(body, idempotency_key, stream_tokens=body.stream_tokens)
    return await _stream(services, caller, agent_id, req, include_pings=body.include_pings)


@router.post("/v1/agents/{agent_id}/messages/async", response_model=Run, responses=_SEND_ERRORS)
async def send_message_async(
    agent_id: AgentId,
    body: AsyncRequestBody,
    caller: TurnCallerDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> dict:
    """Start the turn in the background; its run (and the result) are read through /v1/runs."""
    if body.callback_url:
        raise InvalidInput("callback_url is not supported by recalld; poll the run (GET /v1/runs/{run_id}) instead")
    req = _request(body, idempotency_key, background=True)
    return run_view(await services.turns.start_async(caller, agent_id, req))


@router.get("/v1/agents/{agent_id}/messages", response_model=list[LettaMessage], responses=error_responses(404))
async def list_messages(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 100,
    order: Order = "desc",
    include_return_message_types: Annotated[list[MessageType] | None, Query()] = None,
    use_assistant_message: bool = True,
    assistant_message_tool_name: str | None = None,
    assistant_message_tool_kwarg: str | None = None,
    include_err: bool | None = None,
    conversation_id: QTextList = None,
) -> list[dict]:
    """The agent's history: `limit` stored messages from the oldest (asc) or newest (desc) end of the cursor
    window, returned oldest first."""
    return await services.history.list(
        caller,
        agent_id,
        before=before,
        after=after,
        limit=limit,
        ascending=order == "asc",
        types=list(include_return_message_types or []) or None,
    )


@router.patch("/v1/agents/{agent_id}/reset-messages", response_model=AgentState, responses=error_responses(404, 409))
async def reset_messages(
    agent_id: AgentId, caller: CallerDep, services: ServicesDep, add_default_initial_messages: bool = False
) -> dict:
    """Empty the context window (the history stays) and recompile the system message."""
    await services.turns.reset(caller, agent_id, add_default_initial_messages)
    return await services.agents.retrieve(caller, agent_id, {"agent.blocks", "agent.tools", "agent.tags"})


@router.post(
    "/v1/agents/{agent_id}/messages/cancel", response_model=dict[str, str], responses=error_responses(404, 409)
)
async def cancel_runs(
    agent_id: AgentId, caller: CallerDep, services: ServicesDep, body: CancelBody | None = None
) -> dict:
    """Cancel the agent's running turns (all, or those named); they stop between steps."""
    return await services.turns.cancel(caller, agent_id, body.run_ids if body else None)


@router.patch("/v1/agents/{agent_id}/messages/{message_id}", include_in_schema=False)
async def modify_message(agent_id: str, message_id: str) -> Response:
    return Response(
        orjson.dumps({"detail": "Message editing is no longer supported."}),
        status_code=405,
        media_type="application/json",
    )


# --- streaming ----------------------------------------------------------------------------------------------


def _sse(payload: Any, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + data + b"\n\n"


def _ping(run_id: str | None) -> dict:
    return {
        "id": f"ping-{uuid.uuid4()}",
        "date": message_date(utcnow()),
        "name": None,
        "message_type": "ping",
        "otid": None,
        "sender_id": None,
        "step_id": None,
        "is_err": None,
        "seq_id": None,
        "run_id": run_id,
    }


def _error_type(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ProviderTimeout):
        return "llm_api_error", "llm_timeout"
    if isinstance(exc, ProviderRateLimited):
        return "llm_api_error", "llm_rate_limit"
    if isinstance(exc, ProviderError):
        return "llm_api_error", "llm_error"
    return "error", "internal_error"


async def _stream(services, caller: Caller, agent_id: str, req: SendRequest, *, include_pings: bool) -> Response:  # noqa: ANN001
    """Start the turn, wait until it holds the agent (so a busy agent is a plain 409), then stream it."""
    queue: asyncio.Queue = asyncio.Queue()
    started: asyncio.Future = asyncio.get_running_loop().create_future()
    done = object()

    async def emit(message: dict) -> None:
        queue.put_nowait(message)

    task = asyncio.create_task(services.turns.send(caller, agent_id, req, emit=emit, started=started))
    # The turn goes on when the client disconnects: keep it referenced until it ends.
    services.turns.background.add(task)
    task.add_done_callback(services.turns.background.discard)
    task.add_done_callback(lambda t: (queue.put_nowait(done), t.cancelled() or t.exception()))
    await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        task.result()  # raises the error that stopped the turn from starting (404, 409…)
    if started.exception() is not None:
        raise started.exception()
    run_id = started.result()["id"]

    async def events() -> AsyncIterator[bytes]:
        metrics.SSE_STREAMS.inc()
        try:
            async for chunk in _events():
                yield chunk
        finally:
            metrics.SSE_STREAMS.dec()

    async def _events() -> AsyncIterator[bytes]:
        if include_pings:
            yield _sse(_ping(run_id))
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield _sse(_ping(run_id))
                continue
            if item is done:
                break
            yield _sse(item)
        error = task.exception()
        if error is None:
            response = task.result()
            yield _sse(response["stop_reason"])
            yield _sse(response["usage"])
        else:
            stop, error_type = _error_type(error)
            detail = error.detail if isinstance(error, RecalldError) else "An unknown error occurred"
            yield _sse({"message_type": "stop_reason", "stop_reason": stop})
            yield _sse(
                {
                    "message_type": "error_message",
                    "run_id": run_id,
                    "error_type": error_type,
                    "message": detail,
                    "detail": detail,
                    "seq_id": None,
                },
                event="error",
            )
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
