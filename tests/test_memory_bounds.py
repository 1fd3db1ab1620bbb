"""An instance's memory grows with the turns in flight, never with the agents that exist: every piece of
per-agent (or per-key, per-message) state a process keeps is removed when idle or bounded.
bench/memory_per_agent.py measures the same through a real server with 10,000 agents."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from recalld.agent import compaction, convert
from recalld.api import deps
from recalld.api.key_cache import KeyCache
from recalld.coord.cluster_lease import TurnLeases
from recalld.coord.lease import LocalLeases
from recalld.errors import Conflict
from recalld.llm import providers, tokens
from recalld.llm.catalog import ModelCatalog
from recalld.llm.http import ProviderHTTP
from recalld.services.caller import Caller
from recalld.services.turns import TurnService
from recalld.settings import Settings

AGENTS = [f"agent-{i:05d}" for i in range(1000)]


def _settings(tmp_path) -> Settings:
    return Settings(dir=tmp_path, openai_base_url="http://127.0.0.1:9/v1", openai_api_key="sk-test")


async def test_local_leases_forget_agents_nobody_holds_or_waits_for():
    leases = LocalLeases()

    async def turn(agent_id: str) -> None:
        async with leases.hold(agent_id, wait_s=5):
            await asyncio.sleep(0)

    # Two turns per agent, so half of them queue behind the other.
    await asyncio.gather(*(turn(a) for a in AGENTS for _ in range(2)))
    assert leases._locks == {} and leases._users == {}
    assert leases.total_queued() == 0


async def test_local_leases_forget_agents_after_timeouts_and_cancellations():
    leases = LocalLeases()
    release = asyncio.Event()
    held = AGENTS[:100]

    async def holder(agent_id: str) -> None:
        async with leases.hold(agent_id, wait_s=5):
            await release.wait()

    async def impatient(agent_id: str) -> None:
        with pytest.raises(Conflict):
            async with leases.hold(agent_id, wait_s=0.01):
                pass

    async def patient(agent_id: str) -> None:
        async with leases.hold(agent_id, wait_s=5):
            pass

    holders = [asyncio.create_task(holder(a)) for a in held]
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(patient(a)) for a in held]  # cancelled while they wait (a client left)
    await asyncio.gather(*(impatient(a) for a in held))
    assert leases.total_queued() == 200
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    release.set()
    await asyncio.gather(*holders)
    assert leases._locks == {} and leases._users == {}


async def test_turn_leases_on_one_instance_keep_nothing_per_agent():
    leases = TurnLeases(ttl_s=30, redis=None, postgres=None, holder="test")
    for agent_id in AGENTS:
        async with leases.hold("org-1", agent_id, wait_s=1) as lease:
            assert lease.backend == "local"
    assert leases.local._locks == {} and leases.local._users == {}


async def test_turn_service_forgets_a_run_whose_steps_fail_before_they_start(tmp_path):
    class BrokenClients:
        def for_config(self, llm_config: dict):
            raise RuntimeError("no client for this configuration")

    service = TurnService(None, _settings(tmp_path), None, BrokenClients(), None)
    caller = Caller(org_id="org-1", user_id="user-1")
    for agent_id in AGENTS[:50]:
        state = SimpleNamespace(agent={"id": agent_id, "llm_config": {}})
        with pytest.raises(RuntimeError):
            await service._steps(caller, state, None, {"id": f"run-{agent_id}"}, [], None, None,
                                 SimpleNamespace(cancel=None))
    assert service._cancel == {}


async def test_api_key_cache_is_bounded():
    cache = KeyCache(ttl_s=30, max_entries=100)
    caller = Caller(org_id="org-1", user_id="user-1")
    for i in range(1000):
        cache.put(f"rk-{i}", caller)
    assert len(cache) == 100
    assert cache.keys()[-1] == "rk-999" and cache.get("rk-0") is None  # the oldest went first


async def test_api_key_cache_lookup_path_stays_bounded(tmp_path):
    class Orgs:
        async def caller_for_key(self, key: str) -> Caller:
            return Caller(org_id="org-1", user_id=f"user-{key}")

    services = SimpleNamespace(settings=_settings(tmp_path), key_cache=KeyCache(ttl_s=30, max_entries=50), orgs=Orgs())
    for i in range(500):
        caller = await deps.get_caller(services, authorization=f"Bearer rk-{i}")
        assert caller.user_id == f"user-rk-{i}"
    assert len(services.key_cache) == 50


async def test_chat_clients_are_bounded_whatever_endpoints_agents_name(monkeypatch, tmp_path):
    monkeypatch.setattr(providers, "MAX_CLIENTS", 20)
    # Endpoints of the tenants' own, allowlisted (public http:// hosts; these would be refused when connecting).
    settings = _settings(tmp_path).model_copy(update={"allowed_endpoints": ["http://"]})
    http = ProviderHTTP()  # never opened: building clients sends nothing
    clients = providers.ChatClients(settings, ModelCatalog(settings, http), http)
    for i in range(200):
        config = {"model_endpoint_type": "openai", "model_endpoint": f"http://10.0.0.{i % 250}:8000/v1"}
        assert clients.for_config(config) is not None
    assert len(clients._clients) == 20
    # The same configuration finds its client again.
    same = {"model_endpoint_type": "openai", "model_endpoint": "http://10.0.0.199:8000/v1"}
    assert clients.for_config(same) is clients.for_config(same)


def test_token_count_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(tokens, "_COUNTS", {})
    monkeypatch.setattr(tokens, "_COUNTS_MAX", 100)
    for i in range(1000):
        tokens.count_text(f"{i} " + "long text that recurs every turn " * 10)
    assert 0 < len(tokens._COUNTS) <= 100

    monkeypatch.setattr(compaction, "_TOKEN_CACHE", compaction.OrderedDict())
    monkeypatch.setattr(compaction, "_TOKEN_CACHE_SIZE", 100)
    for i in range(1000):
        row = {"id": f"message-{i}", "role": "user", "content": [{"type": "text", "text": f"hello {i}"}]}
        assert compaction.row_tokens(row) > 0
    assert len(compaction._TOKEN_CACHE) == 100


def test_the_chat_form_cache_is_bounded_and_keeps_the_newest(monkeypatch):
    monkeypatch.setattr(convert, "_CHAT", convert.OrderedDict())
    monkeypatch.setattr(convert, "_CHAT_MAX", 100)
    for i in range(1000):
        row = {"id": f"message-{i}", "role": "user", "content": [{"type": "text", "text": f"hello {i}"}]}
        assert convert.chat_of(row) == {"role": "user", "content": f"hello {i}"}
    assert len(convert._CHAT) == 100 and "message-999" in convert._CHAT
