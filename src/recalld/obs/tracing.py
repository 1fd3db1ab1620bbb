"""OpenTelemetry tracing: a span per request, turn, step, model call, embedding call and database
transaction, exported over OTLP/HTTP (protobuf) when an endpoint is configured.

`RECALLD_OTEL_ENDPOINT` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`) is the collector's base URL, as
in the OTLP specification (`/v1/traces` is appended; a URL already ending in it is used as it is). Without
one no SDK provider is installed, nothing is exported, and every helper here returns one shared no-op
context manager: a disabled span costs a function call and a branch, well under a microsecond.

Attribute names follow the semantic conventions where they exist (http.*, db.system, gen_ai.*); recalld's
own are recalld.agent_id, recalld.run_id, recalld.step. Errors set status ERROR and add an `exception`
event whose message is the error's public detail or a redacted text (obs/logs.redact), never SQL
parameters or keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import traceback
from collections.abc import AsyncIterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from recalld import __version__
from recalld.obs.logs import redact

log = logging.getLogger(__name__)

SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
TRACES_PATH = "/v1/traces"

_tracer: Tracer | None = None
_provider: Any = None  # the SDK TracerProvider, only when tracing is on
# Entered by every disabled span: yields the invalid span, whose setters do nothing.
_NOOP = contextlib.nullcontext(trace.INVALID_SPAN)


def enabled() -> bool:
    return _tracer is not None


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def setup(endpoint: str | None, *, instance_id: str) -> bool:
    """Install an SDK tracer provider exporting to `endpoint` in batches; with no endpoint (or with
    OTEL_SDK_DISABLED=true) install nothing. Returns whether tracing is on."""
    global _tracer, _provider
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if _provider is not None:
        return True
    # Imported here: a server without tracing never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "recalld",
            "service.version": __version__,
            "service.instance.id": instance_id,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
    )
    provider = TracerProvider(resource=resource)
    # Batch size, queue and delay come from OTEL_BSP_* when set.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    # Not installed as the global provider: FastAPI's built-in instrumentation follows the global one and would
    # trace every request a second time (with exception messages recalld keeps out of its spans).
    _provider = provider
    _tracer = provider.get_tracer("recalld", __version__)
    log.info("tracing: exporting spans to %s", traces_url(endpoint))
    return True


def shutdown(timeout_ms: int = 5000) -> None:
    """Export what is buffered and stop the exporter (blocking: call it off the event loop)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.force_flush(timeout_ms)
        provider.shutdown()


def span(name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = INTERNAL,
         parent: otel_context.Context | None = None) -> contextlib.AbstractContextManager[Span]:
    """A span made current for the `with` block; errors raised through it are recorded."""
    if _tracer is None:
        return _NOOP
    return _CurrentSpan(_tracer.start_span(name, context=parent, kind=kind, attributes=_clean(attributes),
                                           record_exception=False, set_status_on_exception=False))


def child_span(name: str, attributes: Mapping[str, Any] | None = None,
               kind: SpanKind = INTERNAL) -> contextlib.AbstractContextManager[Span]:
    """Like `span`, but only inside a traced request or turn: background chores (the run reaper, start-up) would
    otherwise each make a trace of one span."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return _NOOP
    return span(name, attributes, kind)


def start(name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = INTERNAL) -> Span:
    """A span that is not made current (for async generators, whose frames resume in other contexts);
    the caller ends it."""
    if _tracer is None:
        return trace.INVALID_SPAN
    return _tracer.start_span(name, kind=kind, attributes=_clean(attributes), record_exception=False,
                              set_status_on_exception=False)


def current() -> Span:
    return trace.get_current_span()


def current_trace_id() -> str:
    """The current trace's id as 32 hex digits, or "" when no span is recording."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def extract(headers: list[tuple[bytes, bytes]]) -> otel_context.Context | None:
    """The caller's trace context from a W3C `traceparent` header, so recalld's spans join its trace."""
    if _tracer is None:
        return None
    carrier = {}
    for key, value in headers:
        if key in (b"traceparent", b"tracestate"):
            carrier[key.decode("latin-1")] = value.decode("latin-1")
    if not carrier:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier)


def record_error(target: Span, exc: BaseException) -> None:
    """Status ERROR and an `exception` event with the type, a secret-free message and the stack frames."""
    if not target.is_recording():
        return
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    message = _public_message(exc)
    target.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {message}" if message else kind.__name__))
    target.add_event(
        "exception",
        {
            "exception.type": name,
            "exception.message": message,
            # Frames only: the message line of a formatted traceback may carry values.
            "exception.stacktrace": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )


def _public_message(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)  # RecalldError: the text the API answers with
    if isinstance(detail, str):
        return detail
    return redact(str(exc))[:500]


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}


class _CurrentSpan:
    """Makes a started span current until the block ends, then records any error and ends it."""

    __slots__ = ("span", "token")

    def __init__(self, started: Span):
        self.span = started
        self.token: object | None = None

    def __enter__(self) -> Span:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc is not None and not isinstance(exc, GeneratorExit):
            record_error(self.span, exc)
        self.span.end()
        otel_context.detach(self.token)


# --- model calls --------------------------------------------------------------------------------------------


def traced_chat_client(client: Any) -> Any:
    """The client itself when tracing is off; else a wrapper whose calls are `chat {model}` spans."""
    return client if _tracer is None else TracedChatClient(client)


class TracedChatClient:
    """A chat client (llm/types.ChatClient) whose every call is a client span with gen_ai.* attributes."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.provider_name: str = inner.provider_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, request: Any) -> Any:
        with span(f"chat {request.model}", self._attributes(request), CLIENT) as current_span:
            response = await self.inner.complete(request)
            _record_response(current_span, response)
            return response

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        call = start(f"chat {request.model}", self._attributes(request), CLIENT)
        try:
            async for event in self.inner.stream(request):
                if hasattr(event, "finish_reason"):  # the complete response, last
                    _record_response(call, event)
                yield event
        except BaseException as e:
            if not isinstance(e, GeneratorExit):
                record_error(call, e)
            raise
        finally:
            call.end()

    def _attributes(self, request: Any) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self.provider_name,
            "gen_ai.request.model": request.model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "gen_ai.request.temperature": request.temperature,
        }


def _record_response(target: Span, response: Any) -> None:
    if not target.is_recording():
        return
    usage = response.usage
    target.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
    target.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
    if response.finish_reason:
        target.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
