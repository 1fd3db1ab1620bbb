"""Latency recording: one (start, end, outcome) per operation, and the statistics drawn from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# What an operation ended with: an HTTP status, or the name of a transport failure ("timeout", "connect_error", …).
Outcome = int | str


def is_ok(outcome: Outcome) -> bool:
    return isinstance(outcome, int) and 200 <= outcome < 300


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, interpolated linearly between ranks."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class Recorder:
    """The operations of one phase; times are seconds on the bench's clock (perf_counter since the bench began)."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: int = 0

    def add(self, start: float, end: float, outcome: Outcome) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.outcomes.append(outcome)

    @property
    def count(self) -> int:
        return len(self.outcomes)

    @property
    def ok_count(self) -> int:
        return sum(1 for o in self.outcomes if is_ok(o))

    def errors(self) -> dict[str, int]:
        """Failed operations by status (or transport error), e.g. {"409": 2, "timeout": 1}."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            if not is_ok(outcome):
                counts[str(outcome)] = counts.get(str(outcome), 0) + 1
        return dict(sorted(counts.items()))

    def ok_latencies_ms(self) -> list[float]:
        """Latencies of the successful operations, ascending."""
        return sorted(
            (end - start) * 1000
            for start, end, o in zip(self.starts, self.ends, self.outcomes, strict=True)
            if is_ok(o)
        )

    def latency_summary(self) -> dict[str, float | None]:
        values = self.ok_latencies_ms()
        if not values:
            return {"min": None, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        return {
            "min": round(values[0], 3),
            "mean": round(sum(values) / len(values), 3),
            "p50": round(percentile(values, 50), 3),
            "p95": round(percentile(values, 95), 3),
            "p99": round(percentile(values, 99), 3),
            "max": round(values[-1], 3),
        }

    def timeline(self, begin: float, end: float, bin_s: float) -> dict[str, list[float]]:
        """Completions per second and the most requests in flight, per bin of `bin_s` from `begin` to `end`."""
        n_bins = max(1, math.ceil((end - begin) / bin_s))
        completions = [0] * n_bins
        for finished in self.ends:
            completions[min(n_bins - 1, max(0, int((finished - begin) / bin_s)))] += 1
        # In flight: walk the start (+1) and end (-1) events in time order and keep each bin's maximum.
        events = sorted([(s, 1) for s in self.starts] + [(e, -1) for e in self.ends], key=lambda ev: (ev[0], ev[1]))
        peak = [0] * n_bins
        level = 0
        index = 0
        for b in range(n_bins):
            bin_end = begin + (b + 1) * bin_s
            peak[b] = level
            while index < len(events) and events[index][0] < bin_end:
                level += events[index][1]
                peak[b] = max(peak[b], level)
                index += 1
        return {
            "start_s": [round(begin + b * bin_s, 4) for b in range(n_bins)],
            "ops_per_s": [round(c / bin_s, 3) for c in completions],
            "in_flight_max": peak,
        }
