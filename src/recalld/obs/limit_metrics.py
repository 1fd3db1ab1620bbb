"""Metrics of the organization limits (R22), without an organization label on every series.

- `recalld_limit_rejections_total{limit}`: requests refused, by the limit that refused them (a fixed set).
- `recalld_org_limit_rejections{organization_id, limit}`: the TOP_ORGS organizations with the most
  rejections in the last WINDOW_S seconds (at most TOP_ORGS series): who is at its limits now.
- `recalld_org_turns_in_flight{organization_id}`: the TOP_ORGS organizations with the most turns in flight
  on this instance.
- `recalld_limits_backend{backend}`: 1 for the store the limits use now: `redis` (cluster-wide) or `local`
  (per instance: no Redis configured, or Redis lost).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from recalld.obs.metrics import REGISTRY

TOP_ORGS = 10
WINDOW_S = 300.0
LIMITS = ("requests_per_s", "concurrent_turns", "queued_turns", "max_passages", "max_storage_mb",
          "max_tool_seconds_per_min", "max_block_limit", "max_tool_source_bytes", "max_blocks_per_agent")

REJECTIONS = PromCounter("recalld_limit_rejections_total", "Requests refused by an organization limit or hard cap",
                         ["limit"], registry=REGISTRY)
for _limit in LIMITS:
    REJECTIONS.labels(_limit)


class RecentRejections:
    """Rejections of the last WINDOW_S seconds by (organization, limit); bounded memory."""

    MAX_EVENTS = 100_000

    def __init__(self) -> None:
        self.events: deque[tuple[float, str, str]] = deque(maxlen=self.MAX_EVENTS)

    def add(self, org_id: str, limit: str) -> None:
        self.events.append((time.monotonic(), org_id, limit))

    def top(self) -> list[tuple[tuple[str, str], int]]:
        cutoff = time.monotonic() - WINDOW_S
        while self.events and self.events[0][0] < cutoff:
            self.events.popleft()
        return Counter((org, limit) for _, org, limit in self.events).most_common(TOP_ORGS)


RECENT = RecentRejections()


def rejected(org_id: str, limit: str) -> None:
    REJECTIONS.labels(limit).inc()
    RECENT.add(org_id, limit)


class LimitsCollector(Collector):
    def __init__(self) -> None:
        self.inflight: Callable[[], dict[str, int]] | None = None
        self.backend: Callable[[], str] | None = None

    def collect(self):  # noqa: ANN201
        recent = GaugeMetricFamily("recalld_org_limit_rejections",
                                   f"Rejections in the last {WINDOW_S:.0f} s, top {TOP_ORGS} organizations",
                                   labels=["organization_id", "limit"])
        for (org_id, limit), count in RECENT.top():
            recent.add_metric([org_id, limit], count)
        yield recent
        turns = GaugeMetricFamily("recalld_org_turns_in_flight",
                                  f"Turns in flight here, top {TOP_ORGS} organizations", labels=["organization_id"])
        counts = self.inflight() if self.inflight else {}
        for org_id, count in Counter(counts).most_common(TOP_ORGS):
            turns.add_metric([org_id], count)
        yield turns
        backend = GaugeMetricFamily("recalld_limits_backend", "Where organization limits are kept now",
                                    labels=["backend"])
        current = self.backend() if self.backend else "local"
        for name in ("redis", "local"):
            backend.add_metric([name], 1 if name == current else 0)
        yield backend


COLLECTOR = LimitsCollector()
REGISTRY.register(COLLECTOR)
