"""Enforcing the organization limits on requests and turns (R22): requests per second, concurrent and queued
turns, and the max_steps a send may ask for. Over a rate or concurrency limit: 429 with Retry-After."""

from __future__ import annotations

import asyncio

from recalld.coord.rate_limit import RateLimiter
from recalld.coord.turn_slots import RateRefused, Slot, TurnRefused, TurnSlots
from recalld.errors import LimitExceeded
from recalld.obs import limit_metrics
from recalld.services.limits import LimitBook

# A refused request is answered once its organization's next token is due, up to this long: a client that ignores
# Retry-After then slows itself down (one request per connection per token) instead of spending the server's
# time on a stream of 429s that other organizations' requests queue behind.
HOLD_BACK_MAX_S = 0.5


async def _hold_back(wait_s: float) -> None:
    await asyncio.sleep(min(wait_s, HOLD_BACK_MAX_S))


class Admission:
    def __init__(self, book: LimitBook, rate: RateLimiter, slots: TurnSlots):
        self.book = book
        self.rate = rate
        self.slots = slots

    async def request(self, org_id: str) -> None:
        """Take one request from the organization's bucket, or 429 naming the limit."""
        limits = self.book.for_org(org_id)
        wait_s = await self.rate.take(org_id, limits.requests_per_s, limits.burst)
        if wait_s > 0:
            await _hold_back(wait_s)
            raise _over_rate(org_id, limits.requests_per_s, limits.burst, wait_s)

    def max_steps(self, org_id: str, asked: int) -> int:
        """The steps a send may run: what it asks for, up to the organization's max_steps."""
        return min(asked, self.book.for_org(org_id).max_steps)

    async def admit_turn(self, org_id: str, *, agent_free: bool) -> Slot:
        """A send's admission: its request's token and one of the organization's turn slots (with Redis, one
        round trip). A send to an agent no other turn here holds takes a running slot at once when one is free
        (it may then wait for the agent's lease held on another instance while counted as running)."""
        limits = self.book.for_org(org_id)
        try:
            return await self.slots.admit(org_id, limits.concurrent_turns, limits.queued_turns,
                                          rate=(limits.requests_per_s, limits.burst), try_run=agent_free)
        except RateRefused as e:
            await _hold_back(e.wait_s)
            raise _over_rate(org_id, limits.requests_per_s, limits.burst, e.wait_s) from e
        except TurnRefused as e:
            limit_metrics.rejected(org_id, e.limit)
            raise LimitExceeded(e.detail, retry_after_s=1) from e

    async def run_turn(self, slot: Slot, wait_s: float) -> None:
        """Holding the agent's lease, wait for one of the organization's running slots."""
        limits = self.book.for_org(slot.org_id)
        try:
            await self.slots.run(slot, limits.concurrent_turns, wait_s)
        except TurnRefused as e:
            limit_metrics.rejected(slot.org_id, e.limit)
            raise LimitExceeded(e.detail, retry_after_s=1) from e

    async def release(self, slot: Slot) -> None:
        await self.slots.release(slot)


def _over_rate(org_id: str, per_s: float, burst: int, wait_s: float) -> LimitExceeded:
    limit_metrics.rejected(org_id, "requests_per_s")
    return LimitExceeded(
        f"Rate limit exceeded: this organization may make {per_s:g} requests per second (requests_per_s) with "
        f"bursts of {burst} (burst). Retry after {wait_s:.2f} s.",
        retry_after_s=wait_s,
    )
