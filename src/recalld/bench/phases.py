"""The workload phases: what one operation of each phase sends, and the untimed set-up it needs.

Every phase talks plain Letta REST through httpx (no SDK, to keep the client's own cost low). A phase's
`prepare` runs before its clock starts and may answer a note that skips the phase (a route the server lacks).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import httpx

from recalld.bench.recorder import Outcome, is_ok

# Statuses that mean "this server has no such route" rather than "this request failed".
UNSUPPORTED = (404, 405, 501)
DEFAULT_COUNT = 200


async def call(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> tuple[Outcome, httpx.Response | None]:
    """One request; transport failures become an outcome name instead of an exception."""
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.TimeoutException:
        return "timeout", None
    except httpx.ConnectError:
        return "connect_error", None
    except httpx.HTTPError as e:
        return type(e).__name__, None
    return response.status_code, response


@dataclass
class BenchContext:
    """What the phases share: the chosen handles and the things earlier phases made."""

    tag: str
    model: str
    embedding: str | None
    agents_wanted: int
    messages_per_agent: int
    count: int | None
    history_length: int
    page_size: int
    otid: bool = False  # every sent user message carries an otid (idempotent sends, contract R9)
    agent_ids: list[str] = field(default_factory=list)
    contention_agent: str | None = None
    passages: list[tuple[str, str]] = field(default_factory=list)  # (agent id, text) stored by archival-insert
    created: dict[int, str] = field(default_factory=dict)
    warmup_agents: list[str] = field(default_factory=list)
    archival_unsupported: str | None = None
    search_mismatches: int = 0

    def agent_body(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "model": self.model,
            "memory_blocks": [
                {"label": "human", "value": "The user is running a benchmark."},
                {"label": "persona", "value": "I am a terse assistant that answers in one line."},
            ],
        }
        if self.embedding:
            body["embedding"] = self.embedding
        return body

    def all_agents(self) -> list[str]:
        """Every agent the bench made (for the clean-up)."""
        return self.agent_ids + self.warmup_agents + ([self.contention_agent] if self.contention_agent else [])


async def create_agent(ctx: BenchContext, http: httpx.AsyncClient, name: str) -> tuple[Outcome, str | None]:
    outcome, response = await call(http, "POST", "/v1/agents/", json=ctx.agent_body(name))
    if is_ok(outcome) and response is not None:
        return outcome, response.json()["id"]
    return outcome, None


async def send_message(http: httpx.AsyncClient, agent_id: str, text: str, *, otid: bool = False) -> Outcome:
    message = {"role": "user", "content": text}
    if otid:  # what the README tells SDK users to do, so that a retried send is the same turn
        message["otid"] = str(uuid.uuid4())
    body = {"messages": [message]}
    outcome, _ = await call(http, "POST", f"/v1/agents/{agent_id}/messages", json=body)
    return outcome


def _failure(what: str, outcome: Outcome, response: httpx.Response | None) -> str:
    detail = response.text[:200] if response is not None else ""
    return f"{what} answered {outcome} {detail}".strip()


class Phase(ABC):
    """One kind of operation. `per_concurrency`: run once per --concurrency value (else once)."""

    name = ""
    per_concurrency = True

    def total(self, ctx: BenchContext) -> int:
        return ctx.count or DEFAULT_COUNT

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        """Untimed set-up; a returned string is why the phase is skipped."""
        if not ctx.agent_ids:
            return "no agents to work with (agent creation failed)"
        return None

    @abstractmethod
    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        """One timed operation (each phase defines its own)."""


class CreatePhase(Phase):
    name = "create"
    per_concurrency = False

    def total(self, ctx: BenchContext) -> int:
        return ctx.agents_wanted

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        return None

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        outcome, agent_id = await create_agent(ctx, http, f"bench-{ctx.tag}-{i}")
        if agent_id is not None and i >= 0:
            ctx.created[i] = agent_id
        elif agent_id is not None:  # warm-up operations have negative indices; later phases don't use their agents
            ctx.warmup_agents.append(agent_id)
        return outcome


class SendPhase(Phase):
    """Messages to distinct agents: operation i goes to agent i mod N, so C in flight spread over N agents."""

    name = "send"

    def total(self, ctx: BenchContext) -> int:
        wanted = len(ctx.agent_ids) * ctx.messages_per_agent
        return min(wanted, ctx.count) if ctx.count else wanted

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        agent_id = ctx.agent_ids[i % len(ctx.agent_ids)]
        return await send_message(http, agent_id, f"bench {ctx.tag} message {i}", otid=ctx.otid)


class ContentionPhase(Phase):
    """C senders on one agent: the server must serialize its turns, so this measures queueing on the lease."""

    name = "contention"

    def total(self, ctx: BenchContext) -> int:
        wanted = ctx.agents_wanted * ctx.messages_per_agent
        return min(wanted, ctx.count) if ctx.count else wanted

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        if ctx.contention_agent is None:
            outcome, agent_id = await create_agent(ctx, http, f"bench-{ctx.tag}-contention")
            if agent_id is None:
                return f"could not create the contention agent (status {outcome})"
            ctx.contention_agent = agent_id
        return None

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        assert ctx.contention_agent is not None
        return await send_message(http, ctx.contention_agent, f"bench {ctx.tag} contended {i}", otid=ctx.otid)


def _passage_text(ctx: BenchContext, i: int) -> str:
    return f"bench {ctx.tag} passage {i}: note number {i} about topic {i % 37} for the archival benchmark"


class ArchivalInsertPhase(Phase):
    name = "archival-insert"

    async def _insert(
        self, ctx: BenchContext, http: httpx.AsyncClient, i: int
    ) -> tuple[Outcome, httpx.Response | None]:
        agent_id = ctx.agent_ids[i % len(ctx.agent_ids)]
        text = _passage_text(ctx, i)
        outcome, response = await call(http, "POST", f"/v1/agents/{agent_id}/archival-memory", json={"text": text})
        if is_ok(outcome):
            ctx.passages.append((agent_id, text))
        return outcome, response

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        if note := await super().prepare(ctx, http):
            return note
        if ctx.archival_unsupported:
            return ctx.archival_unsupported
        outcome, response = await self._insert(ctx, http, -1)
        if outcome in UNSUPPORTED:
            ctx.archival_unsupported = _failure("POST /v1/agents/{id}/archival-memory", outcome, response)
            return ctx.archival_unsupported
        return None

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        outcome, _ = await self._insert(ctx, http, i)
        return outcome


class ArchivalSearchPhase(Phase):
    """Searches for the exact text of a stored passage; the report counts searches where it did not come first."""

    name = "archival-search"

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        if note := await super().prepare(ctx, http):
            return note
        if ctx.archival_unsupported:
            return ctx.archival_unsupported
        if not ctx.passages:  # archival-insert did not run: store a few passages to search
            inserter = ArchivalInsertPhase()
            if note := await inserter.prepare(ctx, http):
                return note
            await asyncio.gather(*(inserter.op(ctx, http, i, {}) for i in range(min(20, 2 * len(ctx.agent_ids)))))
        if not ctx.passages:
            return "no passages could be stored to search"
        agent_id, text = ctx.passages[0]
        path = f"/v1/agents/{agent_id}/archival-memory/search"
        outcome, response = await call(http, "GET", path, params={"query": text, "top_k": 5})
        if outcome in UNSUPPORTED:
            return _failure("GET /v1/agents/{id}/archival-memory/search", outcome, response)
        return None

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        agent_id, text = ctx.passages[i % len(ctx.passages)]
        path = f"/v1/agents/{agent_id}/archival-memory/search"
        outcome, response = await call(http, "GET", path, params={"query": text, "top_k": 5})
        if is_ok(outcome) and response is not None:
            results = response.json().get("results") or []
            if not results or results[0].get("content") != text:
                ctx.search_mismatches += 1
        return outcome


class HistoryPhase(Phase):
    """Walks one agent's history oldest first, a page per operation, as the SDK's auto-paging does."""

    name = "history"

    def __init__(self) -> None:
        self.agent_id: str | None = None
        self.stored = 0

    async def _count(self, http: httpx.AsyncClient, agent_id: str) -> int:
        total, after = 0, None
        while True:
            params: dict[str, Any] = {"order": "asc", "limit": 1000}
            if after:
                params["after"] = after
            outcome, response = await call(http, "GET", f"/v1/agents/{agent_id}/messages", params=params)
            if not is_ok(outcome) or response is None:
                return total
            page = response.json()
            if not page:
                return total
            total += len(page)
            after = page[-1]["id"]

    async def prepare(self, ctx: BenchContext, http: httpx.AsyncClient) -> str | None:
        if note := await super().prepare(ctx, http):
            return note
        # The agent with the longest history: the contended one when that phase ran.
        self.agent_id = ctx.contention_agent or ctx.agent_ids[0]
        have = await self._count(http, self.agent_id)
        sends = math.ceil(max(0, ctx.history_length - have) / 2)  # a plain turn stores a user and an assistant message
        for start in range(0, sends, 8):
            await asyncio.gather(
                *(
                    send_message(http, self.agent_id, f"bench {ctx.tag} history {n}")
                    for n in range(start, min(sends, start + 8))
                )
            )
        self.stored = await self._count(http, self.agent_id)
        if self.stored == 0:
            return "GET /v1/agents/{id}/messages returned nothing"
        return None

    def total(self, ctx: BenchContext) -> int:
        return ctx.count or DEFAULT_COUNT

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"order": "asc", "limit": ctx.page_size}
        if worker.get("after"):
            params["after"] = worker["after"]
        outcome, response = await call(http, "GET", f"/v1/agents/{self.agent_id}/messages", params=params)
        if is_ok(outcome) and response is not None:
            page = response.json()
            worker["after"] = page[-1]["id"] if page else None  # an empty page ends a walk; the next starts over
        else:
            worker["after"] = None
        return outcome


class RetrievePhase(Phase):
    name = "retrieve"

    async def op(self, ctx: BenchContext, http: httpx.AsyncClient, i: int, worker: dict[str, Any]) -> Outcome:
        outcome, _ = await call(http, "GET", f"/v1/agents/{ctx.agent_ids[i % len(ctx.agent_ids)]}")
        return outcome


PHASE_TYPES: dict[str, type[Phase]] = {
    p.name: p
    for p in (
        CreatePhase,
        SendPhase,
        ContentionPhase,
        ArchivalInsertPhase,
        ArchivalSearchPhase,
        HistoryPhase,
        RetrievePhase,
    )
}


async def choose_handles(http: httpx.AsyncClient, model: str | None, embedding: str | None) -> tuple[str, str | None]:
    """The model and embedding handles to create agents with: as given, else the usual first choices."""
    if model is None:
        outcome, response = await call(http, "GET", "/v1/models/")
        if not is_ok(outcome) or response is None:
            raise RuntimeError(f"GET /v1/models/ answered {outcome}; pass --model")
        handles = [m.get("handle") for m in response.json() if isinstance(m, dict) and m.get("handle")]
        if not handles:
            raise RuntimeError("the server lists no models; pass --model")
        model = next((h for h in handles if h.endswith("/gpt-4o-mini")), None)
        model = model or next((h for h in handles if "gpt-4o-mini" in h), handles[0])
    if embedding is None:
        outcome, response = await call(http, "GET", "/v1/models/embedding")
        if is_ok(outcome) and response is not None:
            handles = [m.get("handle") for m in response.json() if isinstance(m, dict) and m.get("handle")]
            embedding = next((h for h in handles if h.endswith("/text-embedding-3-small")), None)
            embedding = embedding or (handles[0] if handles else None)
    return model, embedding
