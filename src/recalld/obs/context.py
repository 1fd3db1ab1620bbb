"""What a line of code runs for: the request (its id and span) and the turn (agent, run and span).

`RequestContext` is the outermost middleware: it takes the caller's `X-Request-Id` when well formed (else
makes one), echoes it on the response, puts it and the path's agent id in the log context (obs/logs.py)
and, with tracing on, wraps the request in a server span named by its route template. `turn_scope()` and
`bind_run()` do the same for a turn; asyncio copies both into the tasks a request starts, so a turn run
in the background logs the request id that started it and its span is that request's child.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager

from opentelemetry.trace import Span, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recalld.obs import tracing
from recalld.obs.logs import AGENT_ID, REQUEST_ID, RUN_ID

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is taken only when it cannot forge a log line or a header: short, printable, no spaces.
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_AGENT_PATH = "/v1/agents/"
_AGENT_ID = re.compile(r"agent-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Polled by balancers and scrapers every few seconds: logged with ids, but not traced.
_UNTRACED = ("/metrics", "/v1/health/", "/v1/ready/")


def new_request_id() -> str:
    return os.urandom(16).hex()


def agent_id_from_path(path: str) -> str | None:
    if not path.startswith(_AGENT_PATH):
        return None
    candidate = path[len(_AGENT_PATH) : len(_AGENT_PATH) + 42]
    return candidate if _AGENT_ID.fullmatch(candidate) else None


class RequestContext:
    """Request id, log context and the request's server span for every HTTP request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                if _WELL_FORMED.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        request_id = request_id or new_request_id()
        # Set, never reset: uvicorn runs each request in a task of its own, and the lines logged after the
        # app returns (the access line, an unhandled error) belong to this request too.
        REQUEST_ID.set(request_id)
        agent_id = agent_id_from_path(scope["path"])
        AGENT_ID.set(agent_id)
        RUN_ID.set(None)
        echo = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        if not tracing.enabled() or scope["path"] in _UNTRACED:
            return await self.app(scope, receive, send_with_id)
        method = scope["method"]
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "recalld.request_id": request_id,
            "recalld.agent_id": agent_id,
        }
        with tracing.span(method, attributes, tracing.SERVER, parent=tracing.extract(scope["headers"])) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                # The route is known only once the router matched; its template names the span.
                template = getattr(scope.get("route"), "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def turn_scope(agent_id: str, run_id: str | None = None) -> AbstractContextManager[Span]:
    """The log context and span of one turn of an agent (its run id may be bound later: `bind_run`)."""
    AGENT_ID.set(agent_id)
    RUN_ID.set(run_id)
    return tracing.span("turn", {"recalld.agent_id": agent_id, "recalld.run_id": run_id})


def bind_run(run_id: str) -> None:
    """The turn's run is known: later log lines and the current (turn) span carry its id."""
    RUN_ID.set(run_id)
    if tracing.enabled():
        tracing.current().set_attribute("recalld.run_id", run_id)
