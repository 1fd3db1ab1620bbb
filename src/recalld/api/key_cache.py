"""API keys found valid, remembered for a few seconds so that a request costs no key lookup."""

from __future__ import annotations

import time

from recalld.coord.revocations import RevocationFeed
from recalld.services.caller import Caller

KEY_CACHE_MAX = 10_000


class _NoFeed:
    async def aclose(self) -> None:
        return None


class KeyCache:
    """key → Caller for `ttl_s` (a revocation takes effect within it, or at once through Redis), bounded: at
    `max_entries` the expired go first, then the oldest, so it holds the keys of the last few seconds' callers."""

    def __init__(self, ttl_s: float, max_entries: int = KEY_CACHE_MAX):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str) -> Caller | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, caller: Caller) -> None:
        if self.ttl_s <= 0:
            return
        now = time.monotonic()
        if key not in self._entries and len(self._entries) >= self.max_entries:
            for stale in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                del self._entries[stale]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries.pop(key, None)  # re-inserted last: insertion order is age order
        self._entries[key] = (now + self.ttl_s, caller)

    def clear(self) -> None:
        self._entries.clear()

    async def follow(self, redis_url: str | None) -> RevocationFeed | _NoFeed:
        """Drop the cache on every revocation announced through Redis (coord/revocations.py)."""
        if not redis_url:
            return _NoFeed()
        return await RevocationFeed(redis_url, self.clear).start()
