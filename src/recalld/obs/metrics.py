"""Prometheus metrics: what operators and autoscalers act on to see a deployment and size it.

One registry per process; every instance runs one worker process, so no multiprocess mode is needed
(with several workers, set PROMETHEUS_MULTIPROC_DIR and prometheus-client aggregates them).
The gauge an autoscaler scales on is `recalld_turns_queued` (turns holding or waiting for an agent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter("recalld_http_requests_total", "HTTP requests by route template and status",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("recalld_http_request_duration_seconds", "HTTP request latency by route template",
                         ["method", "route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
DB_POOL_WAIT = Histogram("recalld_db_pool_wait_seconds", "Time to get a database connection", ["engine"],
                         buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30), registry=REGISTRY)
LEASE_WAIT = Histogram("recalld_lease_wait_seconds", "Time a turn waited for its agent's lease",
                       buckets=LATENCY_BUCKETS, registry=REGISTRY)
LEASE_CONTENTION = Counter("recalld_lease_contention_total", "Turns that found their agent busy and waited",
                           registry=REGISTRY)
LEASE_TIMEOUTS = Counter("recalld_lease_timeouts_total", "Turns refused after waiting lease_wait (409)",
                         registry=REGISTRY)
LLM_LATENCY = Histogram("recalld_llm_request_duration_seconds", "Model call latency", ["provider", "model"],
                        buckets=LATENCY_BUCKETS, registry=REGISTRY)
LLM_ERRORS = Counter("recalld_llm_errors_total", "Model calls that failed", ["provider", "model", "status"],
                     registry=REGISTRY)
LLM_TOKENS = Counter("recalld_llm_tokens_total", "Tokens used by model calls", ["provider", "model", "kind"],
                     registry=REGISTRY)
# One observation per embed() call (all of its texts), local model or remote provider; failed calls aren't timed.
EMBEDDING_LATENCY = Histogram("recalld_embedding_duration_seconds", "Embedding call latency",
                              ["provider", "model"], buckets=(0.001, 0.0025, *LATENCY_BUCKETS), registry=REGISTRY)
SSE_STREAMS = Gauge("recalld_sse_streams_active", "Streaming responses open now", registry=REGISTRY)
TURNS = Counter("recalld_turns_total", "Turns by how they ended", ["stop_reason"], registry=REGISTRY)
# Custom tool calls (sandbox/executor.py): label values are fixed sets, never tool or organization names.
TOOL_DURATION = Histogram("recalld_tool_duration_seconds", "Custom tool call latency, slot wait included",
                          ["sandbox"], buckets=(0.01, 0.025, *LATENCY_BUCKETS[2:]), registry=REGISTRY)
TOOL_TIMEOUTS = Counter("recalld_tool_timeouts_total", "Tool calls stopped at their wall time", registry=REGISTRY)
TOOL_KILLED = Counter("recalld_tool_killed_total", "Tool processes that ended without a result (killed, crashed)",
                      registry=REGISTRY)
TOOL_OUTPUT_TRUNCATED = Counter("recalld_tool_output_truncated_total", "Tool calls whose output was cut at the limit",
                                registry=REGISTRY)
TOOL_REFUSED = Counter("recalld_tool_refused_total", "Tool calls refused (no_sandbox, busy, requirements)", ["reason"],
                       registry=REGISTRY)


class PoolCollector(Collector):
    """Pool size, checked-out and overflow connections of every engine, read at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[tuple[str, int, int, int]]]] = []

    def collect(self):  # noqa: ANN201
        size = GaugeMetricFamily("recalld_db_pool_size", "Configured pool size", labels=["engine"])
        out = GaugeMetricFamily("recalld_db_pool_checked_out", "Connections in use", labels=["engine"])
        over = GaugeMetricFamily("recalld_db_pool_overflow", "Connections beyond the pool size", labels=["engine"])
        for source in self.sources:
            for name, pool_size, checked_out, overflow in source():
                size.add_metric([name], pool_size)
                out.add_metric([name], checked_out)
                over.add_metric([name], overflow)
        yield from (size, out, over)


class QueueCollector(Collector):
    """Turns holding or waiting for an agent's lease in this instance: the autoscaling signal."""

    def __init__(self) -> None:
        self.source: Callable[[], int] | None = None

    def collect(self):  # noqa: ANN201
        gauge = GaugeMetricFamily("recalld_turns_queued", "Turns in flight or queued for their agent here")
        gauge.add_metric([], self.source() if self.source else 0)
        yield gauge


POOLS = PoolCollector()
QUEUE = QueueCollector()
REGISTRY.register(POOLS)
REGISTRY.register(QUEUE)


def render() -> bytes:
    return generate_latest(REGISTRY)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path: ids would explode
    the label set)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message) -> None:  # noqa: ANN001
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template != "/metrics":
                method = scope.get("method", "")
                HTTP_REQUESTS.labels(method, template, str(status)).inc()
                HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - started)
