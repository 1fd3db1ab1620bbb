"""Tracing (obs/tracing.py): a real server exports its spans over OTLP/HTTP to a receiver of the test's own,
and the spans of one message form the tree request → turn → step → model call, with the database
transactions under the turn and its steps. Without an endpoint nothing is installed."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from letta_client import Letta
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from recalld.obs import tracing
from recalld.settings import Settings
from tests.servers import server_env, serving

MODEL = "openai/gpt-4o-mini"
MESSAGES_ROUTE = "POST /v1/agents/{agent_id}/messages"
SERVER_KIND, CLIENT_KIND = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2


def _value(any_value) -> Any:  # noqa: ANN001 - an opentelemetry.proto AnyValue
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    """A collector of our own: POST /v1/traces with protobuf ExportTraceServiceRequest bodies, kept as dicts."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                self.resources.append(resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "status": span.status.code,
                                "events": [
                                    {"name": e.name, "attributes": {a.key: _value(a.value) for a in e.attributes}}
                                    for e in span.events
                                ],
                                "resource": resource,
                            }
                        )

    def wait_for(self, what: Callable[[list[dict]], Any], timeout_s: float = 20) -> Any:
        """Polls until `what(spans)` is truthy and returns it (the exporter sends in batches)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            found = what(spans)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"spans never arrived; got {[s['name'] for s in spans]}")

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced_server(receiver, tmp_path_factory, fake_openai):
    tmp_dir = tmp_path_factory.mktemp("recalld-traced")
    env = server_env(
        tmp_dir,
        pg_uri=None,
        openai_base_url=fake_openai.base_url,
        RECALLD_OTEL_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",  # milliseconds between batches: spans arrive promptly
        RECALLD_LLM_MAX_RETRIES="0",
    )
    yield from serving(env, tmp_dir)


@pytest.fixture
def client(traced_server) -> Letta:
    return Letta(base_url=traced_server.url, max_retries=0, timeout=30)


def call(tool: str, **args) -> str:
    return f"CALL {tool} {json.dumps(args)}"


def spans_of_request(receiver: OtlpReceiver, request_id: str, until: Callable[[list[dict]], bool]) -> list[dict]:
    """Every span of the trace whose request span carries `request_id`, once `until(those spans)` holds."""

    def collect(spans: list[dict]) -> list[dict] | None:
        roots = [s for s in spans if s["attributes"].get("recalld.request_id") == request_id]
        if not roots:
            return None
        trace_spans = [s for s in spans if s["trace_id"] == roots[0]["trace_id"]]
        return trace_spans if until(trace_spans) else None

    return receiver.wait_for(collect)


def named(spans: list[dict], name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name]


def children(spans: list[dict], parent: dict) -> list[dict]:
    return [s for s in spans if s["parent_id"] == parent["span_id"]]


def test_a_message_is_a_tree_of_request_turn_steps_model_calls_and_transactions(client, receiver):
    agent = client.agents.create(model=MODEL)
    request_id = f"test-{uuid.uuid4().hex}"
    response = client.agents.messages.create(
        agent.id,
        messages=[{"role": "user", "content": call("conversation_search", query="anything")}],
        extra_headers={"X-Request-Id": request_id},
    )
    run_id = response.messages[0].run_id
    assert response.stop_reason.stop_reason == "end_turn"

    spans = spans_of_request(
        receiver, request_id, lambda ss: len(named(ss, "step")) >= 2 and named(ss, MESSAGES_ROUTE) and named(ss, "turn")
    )
    [request] = named(spans, MESSAGES_ROUTE)
    assert request["parent_id"] is None and request["kind"] == SERVER_KIND
    assert request["attributes"]["http.request.method"] == "POST"
    assert request["attributes"]["http.route"] == "/v1/agents/{agent_id}/messages"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["recalld.agent_id"] == agent.id
    assert request["resource"]["service.name"] == "recalld"
    assert "service.instance.id" in request["resource"] and "service.version" in request["resource"]

    [turn] = named(spans, "turn")
    assert turn["parent_id"] == request["span_id"]
    assert turn["attributes"]["recalld.agent_id"] == agent.id
    assert turn["attributes"]["recalld.run_id"] == run_id
    assert request["start"] <= turn["start"] and turn["end"] <= request["end"]

    steps = sorted(named(spans, "step"), key=lambda s: s["attributes"]["recalld.step"])
    assert [s["attributes"]["recalld.step"] for s in steps] == [0, 1]  # the tool call, then the reply
    for step in steps:
        assert step["parent_id"] == turn["span_id"]
        assert step["attributes"]["recalld.run_id"] == run_id
        assert turn["start"] <= step["start"] and step["end"] <= turn["end"]
        [model_call] = [s for s in children(spans, step) if s["name"].startswith("chat ")]
        assert model_call["name"] == "chat gpt-4o-mini" and model_call["kind"] == CLIENT_KIND
        attributes = model_call["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.system"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.response.finish_reasons"]

    transactions = [s for s in spans if s["name"] in ("db read", "db write")]
    assert all(s["attributes"]["db.system"] == "sqlite" and s["kind"] == CLIENT_KIND for s in transactions)
    # The turn reads its state and records the run, then commits each step; the search reads inside step 0.
    assert len([s for s in children(spans, turn) if s["name"] == "db write"]) >= 3
    assert [s for s in children(spans, steps[0]) if s["name"] == "db read"]
    # One trace, and every span in it hangs off the request.
    assert {s["trace_id"] for s in spans} == {request["trace_id"]}
    by_id = {s["span_id"]: s for s in spans}
    for span in spans:
        if span is not request:
            assert span["parent_id"] in by_id, span["name"]


def test_a_custom_tool_call_is_a_span_of_its_step(client, receiver):
    name = f"traced_{uuid.uuid4().hex[:8]}"
    tool = client.tools.create(source_code=f'def {name}() -> str:\n    """Say ok."""\n    return "ok"\n')
    agent = client.agents.create(model=MODEL, tool_ids=[tool.id])
    request_id = f"test-{uuid.uuid4().hex}"
    client.agents.messages.create(
        agent.id, messages=[{"role": "user", "content": call(name)}], extra_headers={"X-Request-Id": request_id}
    )
    spans = spans_of_request(receiver, request_id, lambda ss: named(ss, "tool") and len(named(ss, "step")) >= 2)
    [tool_span] = named(spans, "tool")
    assert tool_span["attributes"]["gen_ai.tool.name"] == name
    assert tool_span["attributes"]["recalld.sandbox"] == "bwrap"
    assert tool_span["attributes"]["recalld.tool.ok"] is True
    step = next(s for s in named(spans, "step") if s["span_id"] == tool_span["parent_id"])
    assert step["start"] <= tool_span["start"] and tool_span["end"] <= step["end"]


def test_a_streamed_turn_is_a_child_of_its_request(client, receiver):
    agent = client.agents.create(model=MODEL)
    request_id = f"test-{uuid.uuid4().hex}"
    chunks = list(
        client.agents.messages.stream(
            agent.id, messages=[{"role": "user", "content": "a b c"}], stream_tokens=True,
            extra_headers={"X-Request-Id": request_id},
        )
    )
    assert chunks
    spans = spans_of_request(
        receiver, request_id, lambda ss: named(ss, "turn") and named(ss, "POST /v1/agents/{agent_id}/messages/stream")
    )
    [request] = named(spans, "POST /v1/agents/{agent_id}/messages/stream")
    [turn] = named(spans, "turn")
    [step] = named(spans, "step")
    assert turn["parent_id"] == request["span_id"] and step["parent_id"] == turn["span_id"]
    [model_call] = children(spans, step)
    assert model_call["name"] == "chat gpt-4o-mini"
    assert model_call["attributes"]["gen_ai.usage.output_tokens"] > 0


def test_an_async_send_runs_its_turn_as_a_child_of_the_request_that_started_it(client, receiver):
    agent = client.agents.create(model=MODEL)
    request_id = f"test-{uuid.uuid4().hex}"
    run = client.agents.messages.create_async(
        agent.id, messages=[{"role": "user", "content": "later"}], extra_headers={"X-Request-Id": request_id}
    )
    spans = spans_of_request(receiver, request_id, lambda ss: named(ss, "turn") and named(ss, "step"))
    [request] = named(spans, "POST /v1/agents/{agent_id}/messages/async")
    [turn] = named(spans, "turn")
    assert turn["parent_id"] == request["span_id"]
    assert turn["attributes"]["recalld.run_id"] == run.id
    assert named(spans, "chat gpt-4o-mini")


def test_errors_set_status_and_an_exception_event_without_secrets(client, receiver):
    agent = client.agents.create(model=MODEL)
    request_id = f"test-{uuid.uuid4().hex}"
    with pytest.raises(Exception):  # noqa: B017 - how the API answers is tested elsewhere
        client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "FAIL 400"}], extra_headers={"X-Request-Id": request_id}
        )
    spans = spans_of_request(receiver, request_id, lambda ss: named(ss, "turn") and named(ss, "chat gpt-4o-mini"))
    for name in ("chat gpt-4o-mini", "step", "turn"):
        [span] = named(spans, name)
        assert span["status"] == STATUS_ERROR, name
        [event] = [e for e in span["events"] if e["name"] == "exception"]
        assert event["attributes"]["exception.type"] == "recalld.errors.ProviderError"
        assert "400" in event["attributes"]["exception.message"]
    assert "sk-test" not in json.dumps(spans)  # the provider key the server was given


def test_a_callers_traceparent_is_continued(client, traced_server, receiver):
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    request_id = f"test-{uuid.uuid4().hex}"
    client.agents.list(extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Request-Id": request_id})
    spans = spans_of_request(receiver, request_id, lambda ss: True)
    [request] = [s for s in spans if s["kind"] == SERVER_KIND]
    assert request["name"] == "GET /v1/agents/"
    assert request["trace_id"] == trace_id and request["parent_id"] == parent_id


def test_a_422_body_names_its_trace(traced_server, receiver):
    request_id = f"test-{uuid.uuid4().hex}"
    response = httpx.post(f"{traced_server.url}/v1/agents/", json={"name": 5}, timeout=10,
                          headers={"X-Request-Id": request_id})
    assert response.status_code == 422
    spans = spans_of_request(receiver, request_id, lambda ss: True)
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["trace_id"])
    assert response.json()["trace_id"] == spans[0]["trace_id"]


def test_only_requests_start_traces(client, receiver):
    """Background chores (the run reaper, start-up) run transactions too; they make no traces of their own."""
    client.agents.create(model=MODEL)
    time.sleep(0.5)
    with receiver.lock:
        roots = [s for s in receiver.spans if s["parent_id"] is None]
    assert roots and all(s["kind"] == SERVER_KIND for s in roots), {s["name"] for s in roots}


def test_without_an_endpoint_no_provider_is_installed_and_spans_cost_nothing(monkeypatch):
    for name in ("RECALLD_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.otel_endpoint is None
    assert tracing.setup(settings.otel_endpoint, instance_id="test") is False
    assert not tracing.enabled()
    # The API's default provider (a proxy to no-op tracers), not the SDK's.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    first, second = tracing.span("a"), tracing.span("b", {"x": 1})
    assert first is second  # one shared no-op context manager: no span object, no exporter
    with first as span:
        assert not span.is_recording()
    client = object()
    assert tracing.traced_chat_client(client) is client


def test_the_standard_otlp_variable_is_read_and_means_the_collectors_base_url(monkeypatch):
    monkeypatch.delenv("RECALLD_OTEL_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().otel_endpoint == "http://collector:4318"
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/v1/traces/") == "http://collector:4318/v1/traces"
