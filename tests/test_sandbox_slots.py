"""sandbox/slots.py: tool processes per instance and per organization; extra calls queue up to a bound."""

from __future__ import annotations

import asyncio

import pytest

from recalld.sandbox.slots import SlotsBusy, ToolSlots


async def _hold(slots: ToolSlots, org: str, release: asyncio.Event, entered: list[str], wait_s: float = 5) -> None:
    async with slots.hold(org, wait_s):
        entered.append(org)
        await release.wait()


async def test_an_org_beyond_its_slots_waits_while_another_org_runs():
    slots = ToolSlots(total=4, per_org=2, queue_max=10)
    release, entered = asyncio.Event(), []
    busy = [asyncio.create_task(_hold(slots, "a", release, entered)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert entered == ["a", "a"]  # the third call of org a queues
    other = asyncio.create_task(_hold(slots, "b", release, entered))
    await asyncio.sleep(0.05)
    assert entered == ["a", "a", "b"]  # org b is not held up by org a's queue
    release.set()
    await asyncio.gather(*busy, other)
    assert entered.count("a") == 3
    assert not slots._orgs and slots.waiting == 0


async def test_instance_slots_bound_every_org_together():
    slots = ToolSlots(total=2, per_org=2, queue_max=10)
    release, entered = asyncio.Event(), []
    tasks = [asyncio.create_task(_hold(slots, org, release, entered)) for org in ("a", "b", "c")]
    await asyncio.sleep(0.05)
    assert len(entered) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == ["a", "b", "c"]


async def test_a_full_queue_refuses_at_once():
    slots = ToolSlots(total=1, per_org=1, queue_max=1)
    release, entered = asyncio.Event(), []
    running = asyncio.create_task(_hold(slots, "a", release, entered))
    queued = asyncio.create_task(_hold(slots, "a", release, entered))
    await asyncio.sleep(0.05)
    with pytest.raises(SlotsBusy, match="waiting"):
        async with slots.hold("a", 5):
            pass
    release.set()
    await asyncio.gather(running, queued)


async def test_waiting_longer_than_the_bound_is_refused_and_frees_its_place():
    slots = ToolSlots(total=1, per_org=1, queue_max=5)
    release, entered = asyncio.Event(), []
    running = asyncio.create_task(_hold(slots, "a", release, entered))
    await asyncio.sleep(0.01)
    with pytest.raises(SlotsBusy, match="within"):
        async with slots.hold("b", 0.05):
            pass
    assert slots.waiting == 0 and "b" not in slots._orgs
    release.set()
    await running
    async with slots.hold("b", 1):  # the instance slot it never took is free
        pass
