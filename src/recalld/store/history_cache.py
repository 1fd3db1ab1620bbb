"""In-context message rows kept between turns, so a turn reads only the rows committed since the last one.

Committed messages never change (their sequence numbers are fixed; only the system message is rewritten in
place, and it is always read afresh), so rows cached for an agent stay right whatever another instance did
meanwhile: a turn asks the database only for rows past what it has. A cache that is safe to drop
(docs/ARCHITECTURE.md): bounded by total rows, least recently used agents go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Span:
    first_seq: int
    rows: list[dict]  # every message with first_seq <= seq <= last_seq, in seq order

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.rows) - 1


class HistoryCache:
    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._spans: OrderedDict[tuple[str, str], _Span] = OrderedDict()
        self._rows = 0

    def rows(self, org_id: str, agent_id: str, first_seq: int, last_seq: int) -> list[dict]:
        """Cached rows from first_seq on (contiguous, at most up to last_seq); [] when none are usable."""
        span = self._spans.get((org_id, agent_id))
        if span is None or span.first_seq > first_seq or span.last_seq < first_seq:
            return []
        self._spans.move_to_end((org_id, agent_id))
        return span.rows[first_seq - span.first_seq : last_seq - span.first_seq + 1]

    def span(self, org_id: str, agent_id: str) -> tuple[int, int] | None:
        """(first, last) sequence numbers held for the agent, or None."""
        span = self._spans.get((org_id, agent_id))
        return (span.first_seq, span.last_seq) if span is not None else None

    def store(self, org_id: str, agent_id: str, first_seq: int, rows: list[dict]) -> None:
        """Rows of seq first_seq, first_seq + 1, … (a contiguous run) for the agent."""
        self.forget(org_id, agent_id)
        if not rows or self.max_rows <= 0 or len(rows) > self.max_rows // 4:
            return  # one agent may not take the whole cache
        if any(row["seq"] != first_seq + i for i, row in enumerate(rows)):
            return  # not contiguous: nothing to rely on
        self._spans[(org_id, agent_id)] = _Span(first_seq, rows)
        self._rows += len(rows)
        while self._rows > self.max_rows:
            _, evicted = self._spans.popitem(last=False)
            self._rows -= len(evicted.rows)

    def forget(self, org_id: str, agent_id: str) -> None:
        span = self._spans.pop((org_id, agent_id), None)
        if span is not None:
            self._rows -= len(span.rows)

    def __len__(self) -> int:
        return self._rows
