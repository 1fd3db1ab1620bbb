"""Who is calling: resolved by the API before any handler runs (docs/ARCHITECTURE.md principle 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    org_id: str
    user_id: str
