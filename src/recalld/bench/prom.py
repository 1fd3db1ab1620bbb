"""Database pool utilisation read from a server's Prometheus `/metrics`, when it has one.

The reader looks for two gauges and sums each over its label sets (engines, shards, replicas):
  * `recalld_db_pool_checked_out` — connections lent out right now;
  * `recalld_db_pool_size`        — connections the pool keeps (its size, overflow not included).
A server without `/metrics`, or without these names, gives no pool figures and the report says why.
"""

from __future__ import annotations

import asyncio
import math
import re

import httpx

CHECKED_OUT = "recalld_db_pool_checked_out"
POOL_SIZE = "recalld_db_pool_size"
POOL_METRICS = (CHECKED_OUT, POOL_SIZE)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum of the samples of each metric name in Prometheus text format; comments and odd lines are skipped."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + value
    return totals


class PoolWatcher:
    """Scrapes /metrics while a phase runs and summarises the pool gauges it finds."""

    def __init__(self, client: httpx.AsyncClient, interval_s: float = 1.0):
        self.client = client
        self.interval_s = interval_s
        self.state = "unknown"  # "present" | "absent: <why>"
        self._samples: list[tuple[float, float]] = []
        self._task: asyncio.Task | None = None

    async def _scrape(self) -> dict[str, float] | None:
        try:
            response = await self.client.get("/metrics")
        except httpx.HTTPError as e:
            self.state = f"absent: GET /metrics failed ({type(e).__name__})"
            return None
        if response.status_code != 200:
            self.state = f"absent: GET /metrics answered {response.status_code}"
            return None
        values = parse_prometheus(response.text)
        if CHECKED_OUT not in values:
            self.state = f"absent: /metrics has no {CHECKED_OUT}"
            return None
        self.state = "present"
        return values

    async def probe(self) -> bool:
        """Whether the server exposes the pool gauges (checked once, before the phases)."""
        return await self._scrape() is not None

    async def _loop(self) -> None:
        while True:
            values = await self._scrape()
            if values is not None:
                self._samples.append((values[CHECKED_OUT], values.get(POOL_SIZE, math.nan)))
            await asyncio.sleep(self.interval_s)

    def begin(self) -> None:
        self._samples = []
        if self.state == "present":
            self._task = asyncio.create_task(self._loop())

    async def end(self) -> dict[str, float | int] | None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if not self._samples:
            return None
        checked_out = [c for c, _ in self._samples]
        sizes = [s for _, s in self._samples if not math.isnan(s)]
        size = max(sizes) if sizes else None
        summary: dict[str, float | int] = {
            "samples": len(self._samples),
            "checked_out_max": max(checked_out),
            "checked_out_mean": round(sum(checked_out) / len(checked_out), 3),
        }
        if size:
            summary["size"] = size
            summary["utilisation_max"] = round(max(checked_out) / size, 3)
            summary["utilisation_mean"] = round(sum(checked_out) / len(checked_out) / size, 3)
        return summary
