"""Turns: one input and the agent steps it triggers, one at a time per agent (docs/ARCHITECTURE.md, the path
of a message). The lease queues turns; each step reads nothing inside a transaction while the model
thinks, and commits atomically behind the fence (one statement on PostgreSQL, see store/step_commit.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld import ids
from recalld.agent import compaction
from recalld.agent.convert import to_letta
from recalld.agent.loop import StepResult, TurnState, run_step, tool_schemas
from recalld.agent.messages import memgpt_boot_messages, message_row
from recalld.agent.rules import RuleBook
from recalld.agent.tool_runner import ToolRunner
from recalld.coord.cluster_lease import Lease, TurnLeases
from recalld.coord.turn_slots import Slot
from recalld.errors import Conflict, LimitExceeded, NotFound, ProviderError, RecalldError, Unavailable
from recalld.llm import tokens
from recalld.llm.providers import ChatClients
from recalld.llm.types import Usage
from recalld.obs import metrics
from recalld.obs.context import bind_run, turn_scope
from recalld.sandbox import ToolRunLimits, ToolSandbox
from recalld.secrets_box import SecretsBox
from recalld.services.admission import Admission
from recalld.services.caller import Caller
from recalld.services.memory import archival_count
from recalld.services.models import ModelResolver
from recalld.services.tool_budget import BudgetedToolRunner, ToolBudget
from recalld.services.turn_store import (
    FenceViolation,
    StepCommit,
    commit_step,
    count_committed,
    load_state,
    one_statement,
    open_state,
)
from recalld.services.turn_tools import TurnToolServices
from recalld.settings import Settings
from recalld.store import agents as agents_store
from recalld.store import runs as runs_store
from recalld.store.history_cache import HistoryCache
from recalld.store.router import StoreRouter
from recalld.store.types import utcnow

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
# Stop reasons that complete a run; any other ends it failed (contract 7.1).
COMPLETING = frozenset(
    {"end_turn", "max_steps", "tool_rule", "requires_approval", "no_tool_call", "max_tokens_exceeded"}
)
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
# What a PostgreSQL lease's first transaction returns when the turn must first wait for a running slot.
_NOT_OPENED = object()


@dataclass
class SendRequest:
    inputs: list[dict]  # MessageCreate dicts: role, content, name?, otid?, sender_id?
    max_steps: int = 50
    stream_tokens: bool = False
    include_return_message_types: list[str] | None = None
    override_system: str | None = None
    idempotency_key: str | None = None
    background: bool = False
    request_config: dict = field(default_factory=dict)

    @property
    def input_otid(self) -> str | None:
        for message in self.inputs:
            if message.get("otid"):
                return message["otid"]
        return None


def usage_dict(usage: Usage, step_count: int, context_tokens: int) -> dict[str, Any]:
    return {
        "message_type": "usage_statistics",
        "completion_tokens": usage.completion_tokens,
        "prompt_tokens": usage.prompt_tokens,
        "total_tokens": usage.total_tokens,
        "step_count": step_count,
        "run_ids": None,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "context_tokens": context_tokens,
    }


def _add_usage(total: Usage, step: Usage) -> None:
    total.prompt_tokens += step.prompt_tokens
    total.completion_tokens += step.completion_tokens
    for name in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
        value = getattr(step, name)
        if value is not None:
            setattr(total, name, (getattr(total, name) or 0) + value)


def filter_types(messages: list[dict], types: list[str] | None) -> list[dict]:
    return messages if not types else [m for m in messages if m["message_type"] in types]


class TurnService:
    def __init__(
        self,
        router: StoreRouter,
        settings: Settings,
        models: ModelResolver,
        clients: ChatClients,
        leases: TurnLeases,
        passages: Any | None = None,
        sandbox: ToolSandbox | None = None,
        box: SecretsBox | None = None,
        admission: Admission | None = None,
        tool_budget: ToolBudget | None = None,
        quota: Any | None = None,
    ):
        # box: the secrets key (secrets_box.py); required for agents that have secrets.
        self.router = router
        self.box = box
        self.admission = admission
        self.tool_budget = tool_budget
        self.quota = quota
        self.settings = settings
        self.sandbox = sandbox
        self.models = models
        self.clients = clients
        self.leases = leases
        self.passages = passages
        self._cancel: dict[str, asyncio.Event] = {}
        self.history = HistoryCache(settings.history_cache_rows)
        self.background: set[asyncio.Task] = set()

    def _tool_network(self, org_id: str) -> bool:
        """Whether the organization's custom tools get network (`recalld orgs set-limits --tool-network`):
        then through the sandbox's proxy, to the operator's allowed endpoints only (R23)."""
        if self.admission is None:
            return self.settings.limit_tool_network
        return self.admission.book.for_org(org_id).tool_network

    def _tool_run_limits(self, org_id: str) -> ToolRunLimits:
        """The organization's tool wall time, memory and process count (`recalld orgs set-limits`, R23)."""
        if self.admission is None:
            return ToolRunLimits.defaults(self.settings)
        return self.admission.book.for_org(org_id).tool_run_limits()

    def _secrets(self, agent: dict) -> dict[str, str]:
        stored = agent.get("secrets")
        if not stored:
            return {}
        if self.box is None:
            raise RuntimeError("TurnService was built without a SecretsBox, and this agent has secrets")
        return self.box.open_mapping(stored)

    # --- entry points ---------------------------------------------------------------------------------

    async def send(
        self,
        caller: Caller,
        agent_id: str,
        req: SendRequest,
        *,
        emit: Emit | None = None,
        started: asyncio.Future | None = None,
    ) -> dict:
        """Run a turn to its end and return the LettaResponse (or the recorded one for a repeated send)."""
        slot = await self._admit(caller, agent_id, req)
        try:
            if req.idempotency_key or req.input_otid:
                await self._await_running_duplicate(caller, agent_id, req)
            with turn_scope(agent_id):
                opening = functools.partial(self._open, caller=caller, agent_id=agent_id, req=req, run=None)
                async with self._hold(caller.org_id, agent_id, opening, slot) as (lease, beat):
                    return await self._turn(caller, agent_id, req, run=None, emit=emit, started=started,
                                            lease=lease, beat=beat)
        finally:
            if slot is not None:
                await asyncio.shield(self.admission.release(slot))

    async def _admit(self, caller: Caller, agent_id: str, req: SendRequest) -> Slot | None:
        """The organization's limits on a send: its request counts against the rate, its max_steps caps the
        request's, and the turn takes one of its turn slots (429 over any); storage is checked for the input."""
        slot = None
        if self.admission is not None:
            req.max_steps = self.admission.max_steps(caller.org_id, req.max_steps)
            slot = await self.admission.admit_turn(caller.org_id, agent_free=self.leases.queued(agent_id) == 0)
        if self.quota is not None:
            try:
                await self.quota.check(caller.org_id, add_bytes=sum(_input_chars(m) for m in req.inputs))
            except BaseException:
                if slot is not None:
                    await asyncio.shield(self.admission.release(slot))
                raise
        return slot

    @asynccontextmanager
    async def _hold(
        self, org_id: str, agent_id: str, opening: Callable[[AsyncConnection], Awaitable[Any]] | None = None,
        slot: Slot | None = None,
    ) -> AsyncIterator[tuple[Lease, RunHeartbeat]]:
        """The agent's lease; while it is renewed, the run's row is touched so reapers see it alive. With a
        PostgreSQL lease, the turn's opening runs on the lease's connection right after it (see TurnLeases.hold).
        A turn with a slot then waits, holding the agent, for one of its organization's running slots — before
        its opening, so a turn refused there leaves nothing behind."""
        beat = RunHeartbeat(self.router, org_id)
        first_tx = opening
        if slot is not None and opening is not None:
            limits = self.admission.book.for_org(org_id)

            async def first_tx(conn: AsyncConnection) -> Any:
                # No waiting on the lease's connection: only a slot free at once lets the opening run here.
                if self.admission.slots.try_run_now(slot, limits.concurrent_turns):
                    return await opening(conn)
                return _NOT_OPENED

        async with self.leases.hold(org_id, agent_id, self.settings.lease_wait_s, on_renew=beat,
                                    first_tx=first_tx) as lease:
            if lease.opened and lease.opening is _NOT_OPENED:
                lease.opened, lease.opening = False, None
            if slot is not None and not slot.running:
                await self.admission.run_turn(slot, self.settings.lease_wait_s)
            yield lease, beat

    async def _await_running_duplicate(self, caller: Caller, agent_id: str, req: SendRequest) -> None:
        """A repeated send whose first copy is still running waits for it (outside the lease it holds)."""
        deadline = time.monotonic() + self.settings.lease_wait_s
        while True:
            async with self.router.single_read(caller.org_id) as conn:
                run = await runs_store.find_idempotent(
                    conn, caller.org_id, agent_id, key=req.idempotency_key, otid=req.input_otid
                )
            if run is None or run["status"] not in runs_store.ACTIVE or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def start_async(self, caller: Caller, agent_id: str, req: SendRequest) -> dict:
        """Record a run and run the turn in the background; the run is returned at once."""
        slot = await self._admit(caller, agent_id, req)
        try:
            run, existing = await self._record_async_run(caller, agent_id, req)
        except BaseException:
            if slot is not None:
                await asyncio.shield(self.admission.release(slot))
            raise
        if run is None:
            if slot is not None:
                await self.admission.release(slot)
            return existing
        task = asyncio.create_task(self._run_in_background(caller, agent_id, req, run, slot))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return run

    async def _record_async_run(self, caller: Caller, agent_id: str, req: SendRequest) -> tuple[dict | None, dict]:
        """(the new run, None), or (None, the run an identical send recorded before)."""
        async with self.router.write(caller.org_id) as conn:
            existing = await runs_store.find_idempotent(
                conn, caller.org_id, agent_id, key=req.idempotency_key, otid=req.input_otid
            )
            if existing is not None:
                return None, existing
            if not await _agent_exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            run = self._new_run(caller, agent_id, req, status="created", run_type="send_message_async")
            try:
                await runs_store.insert(conn, run)
            except sa_exc.IntegrityError:
                run = None
        if run is None:  # an identical send created it a moment ago
            async with self.router.read(caller.org_id) as conn:
                return None, await runs_store.find_idempotent(
                    conn, caller.org_id, agent_id, key=req.idempotency_key, otid=req.input_otid
                )
        return run, None

    async def _run_in_background(self, caller: Caller, agent_id: str, req: SendRequest, run: dict,
                                 slot: Slot | None = None) -> None:
        try:
            # The span is the child of the request that started the run (asyncio copied its context).
            with turn_scope(agent_id, run["id"]):
                opening = functools.partial(self._open, caller=caller, agent_id=agent_id, req=req, run=run)
                async with self._hold(caller.org_id, agent_id, opening, slot) as (lease, beat):
                    await self._turn(caller, agent_id, req, run=run, emit=None, started=None, lease=lease,
                                     beat=beat)
        except FenceViolation:
            pass  # the turn started and _turn recorded why it failed
        except (Conflict, Unavailable, LimitExceeded) as e:
            await self._finish_run(
                caller.org_id, run["id"], "failed", "error", {"error": e.detail, "reason": "the turn never started"}
            )
        except RecalldError:
            pass  # _turn has recorded the failure on the run
        except Exception:  # noqa: BLE001 - a background turn must not die silently
            log.exception("background turn %s failed", run["id"])
            await self._finish_run(caller.org_id, run["id"], "failed", "error", {"error": "internal error"})
        finally:
            if slot is not None:
                await asyncio.shield(self.admission.release(slot))

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let turns running in the background finish, up to timeout_s; cut the rest (their
        committed steps stay and their runs end failed, like a crash)."""
        if not self.background:
            return
        log.info("draining %d turn(s) for up to %.0f s", len(self.background), timeout_s)
        _, pending = await asyncio.wait(set(self.background), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def reset(self, caller: Caller, agent_id: str, add_default_initial_messages: bool) -> None:
        """Empty the context window (history stays), recompile the system message; a turn of its own."""
        async with self._hold(caller.org_id, agent_id):
            async with self.router.read(caller.org_id) as conn:
                state = await load_state(
                    conn, caller.org_id, agent_id, self.settings.core_memory_block_char_limit, self.history
                )
            state.count_archival = self._archival_counter(caller.org_id, agent_id)
            await state.refresh_archival_count()
            agent = state.agent
            rows: list[dict] = []
            if add_default_initial_messages and state.agent_type in ("memgpt_agent", "memgpt_v2_agent"):
                rows = memgpt_boot_messages(caller.org_id, agent_id, 0, utcnow(), agent["timezone"])
            state.recall_count = agent["last_seq"]
            state.summary = None
            commit = StepCommit(
                rows=rows,
                system_text=state.recompiled_system(utcnow()),
                context_start_seq=agent["last_seq"] + 1,
                clear_summary=True,
            )
            async with self.router.write(caller.org_id) as conn:
                await commit_step(conn, state, commit, run_id="")

    async def cancel(self, caller: Caller, agent_id: str, run_ids: list[str] | None) -> dict[str, str]:
        """Cancel the agent's active runs (all, or those named). The request is recorded on the runs, so the
        instance running a turn sees it at its next step boundary or lease renewal; here it acts at once."""
        async with self.router.write(caller.org_id) as conn:
            if not await _agent_exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            active = [r["id"] for r in await runs_store.active_for_agent(conn, caller.org_id, agent_id)]
            targets = [r for r in active if run_ids is None or r in run_ids]
            if not targets:
                raise Conflict(f"No active runs to cancel for agent {agent_id}")
            await runs_store.request_cancel(conn, caller.org_id, targets, utcnow())
        for run_id in targets:
            event = self._cancel.get(run_id)
            if event is not None:
                event.set()
        return {run_id: "cancelled" for run_id in targets}

    def _archival_counter(self, org_id: str, agent_id: str) -> Callable[[], Awaitable[int]]:
        async def count() -> int:
            async with self.router.read(org_id) as conn:
                return await archival_count(conn, org_id, agent_id)

        return count

    # --- the turn -------------------------------------------------------------------------------------

    async def _open(
        self, conn: AsyncConnection, caller: Caller, agent_id: str, req: SendRequest, run: dict | None
    ) -> tuple[TurnState, dict | None, dict | None, int]:
        """The turn's opening, before any model call: read the agent and record the run. Returns (state, run,
        the completed run to replay for a repeated send or None, messages the run already stored). On
        PostgreSQL a plain send is one statement (store/turn_open.py); it runs after the lease is taken, in a
        statement of its own, so that it reads everything the previous holder committed."""
        org_id = caller.org_id
        limit = self.settings.core_memory_block_char_limit
        # On PostgreSQL a new send's run goes into the opening statement, which inserts it unless a run with the
        # same Idempotency-Key or otid exists; a repeated send, or SQLite, takes the path below.
        one = run is None and self.router.dialect == "postgresql"
        fresh = self._new_run(caller, agent_id, req, status="running", run_type="send_message") if one else None
        state, inserted = await open_state(conn, org_id, agent_id, limit, self.history, new_run=fresh)
        if inserted:
            return state, fresh, None, 0
        replay = None
        existing = await runs_store.find_idempotent(conn, org_id, agent_id, key=req.idempotency_key,
                                                    otid=req.input_otid)
        committed = await count_committed(conn, org_id, existing["id"]) if existing else 0
        if run is None and existing is not None and existing["status"] == "completed" and existing["result"]:
            replay = existing
        elif existing is not None and (run is None or existing["id"] == run["id"]):
            run = existing  # a retried send continues its run, storing the input only once
        if replay is None and run is None:
            run = self._new_run(caller, agent_id, req, status="running", run_type="send_message")
            await runs_store.insert(conn, run)
        elif replay is None:
            await runs_store.update(
                conn, org_id, run["id"], {"status": "running", "lease_holder": INSTANCE_ID, "updated_at": utcnow()}
            )
            if await runs_store.cancel_requested(conn, org_id, run["id"]):
                run = {**run, "cancel_requested_at": utcnow()}
        return state, run, replay, committed

    async def _turn(
        self,
        caller: Caller,
        agent_id: str,
        req: SendRequest,
        *,
        run: dict | None,
        emit: Emit | None,
        started: asyncio.Future | None,
        lease: Lease,
        beat: RunHeartbeat,
    ) -> dict:
        org_id = caller.org_id
        try:
            if lease.opened:  # it ran right after the PostgreSQL lease, on the lease's connection
                state, run, replay, committed = lease.opening
            else:  # reads and at most one write: no transaction needed around them
                async with self.router.statement(org_id) as conn:
                    state, run, replay, committed = await self._open(conn, caller, agent_id, req, run)
        except BaseException as e:
            _fail_start(started, e)
            raise
        if replay is not None:
            _signal_start(started, replay)
            return await self._replay(replay, req, emit)
        _signal_start(started, run)
        state.count_archival = self._archival_counter(org_id, agent_id)
        beat.run_id = run["id"]
        bind_run(run["id"])
        pending = [] if committed else self._input_rows(state, req, run["id"])
        return await self._steps(caller, state, req, run, pending, emit, lease, beat)

    async def _steps(
        self,
        caller: Caller,
        state: TurnState,
        req: SendRequest,
        run: dict,
        pending: list[dict],
        emit: Emit | None,
        lease: Lease,
        beat: RunHeartbeat,
    ) -> dict:
        org_id, run_id = caller.org_id, run["id"]
        llm = self.clients.for_config(state.agent["llm_config"])
        tool_services = TurnToolServices(
            self.router,
            caller,
            state.agent,
            self.passages,
            self.sandbox,
            secrets=self._secrets(state.agent),
            box=self.box,
            network=self._tool_network(org_id),
            limits=self._tool_run_limits(org_id),
        )
        if self.tool_budget is not None:  # custom tools spend the organization's tool seconds (R22)
            runner: ToolRunner = BudgetedToolRunner(
                state.tools, state.memory, tool_services, budget=self.tool_budget, org_id=org_id
            )
        else:
            runner = ToolRunner(state.tools, state.memory, tool_services)
        rules = RuleBook(state.agent.get("tool_rules") or [], state.agent_type)
        usage = Usage()
        produced: list[dict] = []
        step_count = 0
        committed_steps = 0
        context_tokens = 0
        started_ns = time.monotonic_ns()
        ttft_ns: int | None = None
        stop: str | None = None
        # Registered right before the try whose finally removes it: nothing above may leave it behind.
        cancel = beat.cancel = self._cancel.setdefault(run_id, asyncio.Event())
        if run.get("cancel_requested_at"):
            cancel.set()  # cancelled while it waited for its turn
        try:
            for index in range(req.max_steps):
                if cancel.is_set():
                    stop = "cancelled"
                    break
                if lease.lost:
                    raise FenceViolation(f"Lost the lease of agent {state.agent['id']}; the turn stops here.")
                await _count_large_texts_off_loop([state.system_text])
                overflow = await self._compact_if_needed(caller, state, pending, rules, run_id, llm)
                if overflow:
                    stop = overflow
                    break
                delta = emit if (emit is not None and req.stream_tokens) else None
                result = await run_step(
                    state,
                    pending,
                    llm=llm,
                    runner=runner,
                    rules=rules,
                    run_id=run_id,
                    step_index=index,
                    last_step=index == req.max_steps - 1,
                    emit_delta=delta,
                    system_override=req.override_system,
                )
                ttft_ns = ttft_ns or time.monotonic_ns() - started_ns
                step_count += 1
                _add_usage(usage, result.usage)
                context_tokens = result.usage.total_tokens
                stop = result.stop_reason or ("max_steps" if index == req.max_steps - 1 else None)
                if stop is None and cancel.is_set():
                    stop = "cancelled"
                produced.extend(result.produced)
                response = (
                    self._response(state, produced, stop, usage, step_count, context_tokens, req) if stop else None
                )
                await self._commit(state, result, run, stop, response, usage, step_count, started_ns, ttft_ns, lease)
                committed_steps += 1
                pending = []
                if emit is not None:
                    await self._emit_step(emit, state, result, req)
                if stop:
                    return response
            if stop is None:
                stop = "max_steps"
            response = self._response(state, produced, stop, usage, step_count, context_tokens, req)
            await self._commit(state, None, run, stop, response, usage, step_count, started_ns, ttft_ns, lease)
            return response
        except ProviderError as e:
            await self._fail(org_id, state, run_id, "llm_api_error", e.detail, usage, step_count)
            if step_count:
                e.headers = {**(e.headers or {}), "x-should-retry": "false"}
            raise
        except FenceViolation as e:
            await self._fail(org_id, state, run_id, "error", e.detail, usage, step_count)
            if committed_steps:  # a blind retry would repeat the committed steps; one with the otid continues
                e.headers = {**(e.headers or {}), "x-should-retry": "false"}
            raise
        except (asyncio.CancelledError, Exception) as e:
            await asyncio.shield(self._fail(org_id, state, run_id, "error", f"{type(e).__name__}", usage, step_count))
            if committed_steps and isinstance(e, Exception) and (error := _not_to_be_retried(e, run_id)) is not e:
                raise error from e
            raise
        finally:
            self._cancel.pop(run_id, None)

    async def _commit(
        self,
        state: TurnState,
        result: StepResult | None,
        run: dict,
        stop: str | None,
        response: dict | None,
        usage: Usage,
        step_count: int,
        started_ns: int,
        ttft_ns: int | None,
        lease: Lease | None = None,
    ) -> None:
        org_id = state.agent["organization_id"]
        now = utcnow()
        commit = StepCommit(rows=list(result.messages) if result else [])
        if result is not None:
            llm_config = state.agent["llm_config"]
            commit.step_row = {
                "organization_id": org_id,
                "id": result.step_id,
                "run_id": run["id"],
                "agent_id": state.agent["id"],
                "status": "success",
                "stop_reason": result.stop_reason,
                "provider_name": llm_config.get("provider_name") or llm_config.get("model_endpoint_type"),
                "model": llm_config.get("model"),
                "model_handle": llm_config.get("handle"),
                "model_endpoint": self.models.shown_endpoint(llm_config.get("model_endpoint")),
                "context_window_limit": llm_config.get("context_window"),
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "total_tokens": result.usage.total_tokens,
                "created_at": now,
            }
            if result.memory_changed:
                commit.memory = state.memory
                commit.system_text = result.system_text
        if stop:
            metrics.TURNS.labels(stop).inc()
            duration_ns = time.monotonic_ns() - started_ns
            commit.run_update = {
                "status": "completed" if stop in COMPLETING else ("cancelled" if stop == "cancelled" else "failed"),
                "stop_reason": stop,
                "usage": response["usage"] if response else None,
                "result": response,
                "completed_at": now,
                "ttft_ns": ttft_ns,
                "total_duration_ns": duration_ns,
            }
            commit.agent_update = {
                "last_run_completion": now,
                "last_run_duration_ms": duration_ns // 1_000_000,
                "last_stop_reason": stop,
            }
            commit.autoclear = bool(state.agent.get("message_buffer_autoclear"))
            commit.release_lease = lease
        one = one_statement(self.router.dialect, commit)
        async with (self.router.statement(org_id) if one else self.router.write(org_id)) as conn:
            await commit_step(conn, state, commit, run["id"])
            # Between steps: a cancel recorded by another instance stops the turn before its next model call.
            cancel_requested = stop is None and await runs_store.cancel_requested(conn, org_id, run["id"])
        if cancel_requested and (event := self._cancel.get(run["id"])) is not None:
            event.set()
        if result is not None:
            state.history.extend(r for r in result.messages)
            if result.system_text:
                state.system_text = result.system_text
        if commit.autoclear:
            state.history = []

    async def _fail(
        self, org_id: str, state: TurnState, run_id: str, stop: str, error: str, usage: Usage, step_count: int
    ) -> None:
        try:
            await self._finish_run(
                org_id, run_id, "failed", stop, {"error": error}, usage=usage_dict(usage, step_count, 0)
            )
            # Behind the fence too: a stale turn must not overwrite the stop reason of the turn that replaced it.
            params = {"last_stop_reason": stop, "where_org_id": org_id, "where_agent_id": state.agent["id"],
                      "where_last_seq": state.agent["last_seq"]}
            async with self.router.write(org_id) as conn:
                await conn.execute(agents_store.UPDATE_IF_LAST_SEQ, params)
        except Exception:  # noqa: BLE001 - recording the failure must not hide the failure itself
            log.exception("could not record the failure of run %s", run_id)

    async def _finish_run(
        self, org_id: str, run_id: str, status: str, stop: str, metadata: dict, usage: dict | None = None
    ) -> None:
        async with self.router.write(org_id) as conn:
            run = await runs_store.get(conn, org_id, run_id)
            merged = {**((run or {}).get("metadata") or {}), **metadata}
            values = {
                "status": status,
                "stop_reason": stop,
                "metadata": merged,
                "completed_at": utcnow(),
                "updated_at": utcnow(),
            }
            if usage is not None:
                values["usage"] = usage
            await runs_store.update(conn, org_id, run_id, values)

    # --- context window -------------------------------------------------------------------------------

    async def _compact_if_needed(
        self, caller: Caller, state: TurnState, pending: list[dict], rules: RuleBook, run_id: str, llm
    ) -> str | None:  # noqa: ANN001
        window = int(state.agent["llm_config"].get("context_window") or 8192)
        tools_tokens = tokens.count_tools(tool_schemas(state, list(state.tools), rules))
        plan = compaction.plan_eviction(state, pending, tools_tokens, window)
        if plan is None:
            return None
        if plan.evict == 0 or not state.history:
            system_tokens = tokens.count_text(state.system_text) + tools_tokens
            return "context_window_overflow_in_system_prompt" if system_tokens > window else None
        evicted = state.history[: plan.evict]
        summarizer, model = await self._summarizer(state, llm)
        summary = await compaction.summarize(summarizer, model, evicted, state.summary)
        previous_evicted = max(0, state.agent["context_start_seq"] - 1)
        row = compaction.summary_message(state, previous_evicted + len(evicted), summary, run_id)
        kept = state.history[plan.evict :]
        start_seq = kept[0]["seq"] if kept else state.agent["last_seq"] + 2
        state.recall_count = max(0, start_seq - 1)
        state_summary_before = state.summary
        state.summary = row
        await state.refresh_archival_count()
        system_text = state.recompiled_system(utcnow())
        commit = StepCommit(
            rows=[row], system_text=system_text, context_start_seq=start_seq, summary_message_id=row["id"]
        )
        try:
            async with self.router.write(caller.org_id) as conn:
                await commit_step(conn, state, commit, run_id)
        except BaseException:
            state.summary = state_summary_before
            raise
        state.history = kept
        state.system_text = system_text
        log.info("compacted agent %s: %d messages summarised", state.agent["id"], len(evicted))
        return None

    async def _summarizer(self, state: TurnState, llm):  # noqa: ANN001, ANN202
        handle = self.settings.compaction_model or (state.agent.get("compaction_settings") or {}).get("model")
        if handle and handle != state.agent["llm_config"].get("handle"):
            try:
                config = await self.models.resolve_llm(handle)
                return self.clients.for_config(config), config["model"]
            except RecalldError:
                log.warning("compaction model %s is not available; using the agent's own model", handle)
        return llm, state.agent["llm_config"]["model"]

    # --- building and replaying responses -------------------------------------------------------------

    def _response(
        self,
        state: TurnState,
        produced: list[dict],
        stop: str,
        usage: Usage,
        step_count: int,
        context_tokens: int,
        req: SendRequest,
    ) -> dict:
        messages: list[dict] = []
        for row in produced:
            messages.extend(to_letta(row, state.agent_type))
        return {
            "messages": filter_types(messages, req.include_return_message_types),
            "stop_reason": {"message_type": "stop_reason", "stop_reason": stop},
            "usage": usage_dict(usage, step_count, context_tokens),
            "logprobs": None,
            "turns": None,
        }

    async def _emit_step(self, emit: Emit, state: TurnState, result: StepResult, req: SendRequest) -> None:
        for row in result.produced:
            # Token streaming already sent the model's own message as deltas; tool returns go out whole.
            if (
                req.stream_tokens
                and row["role"] == "assistant"
                and state.agent_type not in ("memgpt_agent", "memgpt_v2_agent")
            ):
                continue
            for message in filter_types(to_letta(row, state.agent_type), req.include_return_message_types):
                if req.stream_tokens and message["message_type"] == "reasoning_message":
                    continue
                await emit(message)

    async def _replay(self, run: dict, req: SendRequest, emit: Emit | None) -> dict:
        response = run["result"]
        if emit is not None:
            for message in filter_types(response["messages"], req.include_return_message_types):
                await emit(message)
        return response

    # --- rows -----------------------------------------------------------------------------------------

    def _new_run(self, caller: Caller, agent_id: str, req: SendRequest, *, status: str, run_type: str) -> dict:
        now = utcnow()
        return {
            "organization_id": caller.org_id,
            "id": ids.new_id("run"),
            "agent_id": agent_id,
            "status": status,
            "background": req.background,
            "metadata": {"run_type": run_type},
            "request_config": req.request_config,
            "stop_reason": None,
            "idempotency_key": req.idempotency_key,
            "input_otid": req.input_otid,
            "lease_holder": INSTANCE_ID,
            "usage": None,
            "result": None,
            "created_at": now,
            "updated_at": now,
        }

    def _input_rows(self, state: TurnState, req: SendRequest, run_id: str) -> list[dict]:
        now = utcnow()
        rows = []
        for i, message in enumerate(req.inputs):
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            rows.append(
                message_row(
                    org_id=state.agent["organization_id"],
                    agent_id=state.agent["id"],
                    seq=0,
                    role=message["role"],
                    content=parts,
                    created_at=now + timedelta(microseconds=i),
                    name=message.get("name"),
                    otid=message.get("otid") or str(uuid.uuid4()),
                    sender_id=message.get("sender_id"),
                    run_id=run_id,
                )
            )
        return rows


class RunHeartbeat:
    """Touches the running run's row each time the lease is renewed; the reaper fails runs that go quiet."""

    def __init__(self, router: StoreRouter, org_id: str):
        self.router = router
        self.org_id = org_id
        self.run_id: str | None = None
        self.cancel: asyncio.Event | None = None  # set when another instance recorded a cancel request

    async def __call__(self) -> None:
        if self.run_id is not None:
            async with self.router.statement(self.org_id) as conn:
                cancel_requested = await runs_store.touch(conn, self.org_id, self.run_id, utcnow())
            if cancel_requested and self.cancel is not None:
                self.cancel.set()


async def _agent_exists(conn, org_id: str, agent_id: str) -> bool:  # noqa: ANN001
    return await agents_store.exists(conn, org_id, agent_id)


def _signal_start(started: asyncio.Future | None, run: dict) -> None:
    if started is not None and not started.done():
        started.set_result(run)


def _fail_start(started: asyncio.Future | None, error: BaseException) -> None:
    if started is not None and not started.done():
        started.set_exception(error)


# Texts at least this long are token-counted in a thread (the tokenizer releases the GIL) before the loop's
# context check counts them again, from the count cache: a prompt of large blocks (up to 100 of 1,000,000
# characters, R22) then stalls nobody else's requests (3 M characters: ~0.27 s of tokenizing).
COUNT_OFF_LOOP_CHARS = 64 * 1024


async def _count_large_texts_off_loop(texts: list[str]) -> None:
    large = [text for text in texts if text and len(text) >= COUNT_OFF_LOOP_CHARS]
    if large:
        await asyncio.to_thread(lambda: [tokens.count_text(text) for text in large])


def _input_chars(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    return sum(len(part.get("text") or "") for part in content or [] if isinstance(part, dict))


def _not_to_be_retried(error: Exception, run_id: str) -> RecalldError:
    """The error a send answers with when it fails after some of its steps were committed: the SDK retries
    a 5xx unless told not to, and a blind retry would run those steps again (contract R9). A retry with the
    same otid continues the turn instead."""
    if not isinstance(error, RecalldError):
        log.error("run %s failed after committed steps", run_id, exc_info=error)
        error = RecalldError("An unknown error occurred")
    error.headers = {**(error.headers or {}), "x-should-retry": "false"}
    return error
