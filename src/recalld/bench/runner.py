"""`recalld bench`: start what was asked for, run the phases, measure the server, write the report and plots."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from recalld import __version__
from recalld.bench.phases import PHASE_TYPES, BenchContext, Phase, call, choose_handles
from recalld.bench.procstat import USER_HZ, PostgresBackends, ProcessSampler, machine_cpu_ticks
from recalld.bench.progress import PlainProgress, make_progress
from recalld.bench.prom import POOL_METRICS, PoolWatcher
from recalld.bench.recorder import Recorder, is_ok
from recalld.bench.report import PhaseResult, summary_table, write_report
from recalld.bench.spawn import RecalldProcess, ScriptedLLMProcess

_T0 = time.perf_counter()


def clock() -> float:
    """Seconds since the bench module was loaded: the time axis of the report and the plots."""
    return time.perf_counter() - _T0


async def drive(
    phase: Phase,
    ctx: BenchContext,
    http: httpx.AsyncClient,
    indices: range,
    concurrency: int,
    deadline: float | None,
    recorder: Recorder,
    progress: PlainProgress | None,
) -> None:
    """Run the operations `indices` with `concurrency` workers, until done or past `deadline`."""
    numbers = iter(indices)

    async def worker() -> None:
        state: dict[str, Any] = {}
        for i in numbers:
            if deadline is not None and clock() >= deadline:
                return
            recorder.in_flight += 1
            start = clock()
            outcome = await phase.op(ctx, http, i, state)
            recorder.add(start, clock(), outcome)
            recorder.in_flight -= 1
            if progress is not None:
                progress.advance(is_ok(outcome))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _client(url: str, headers: dict[str, str], concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    # One connection per worker: no request queues inside the client, none are opened beyond the concurrency.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout_s)


class Bench:
    """One bench run against `url`; `server_pid`/`llm_pid` are measured when given."""

    def __init__(self, args: argparse.Namespace, url: str, server_pid: int | None, llm_pid: int | None):
        self.args = args
        self.url = url.rstrip("/")
        self.headers = {"User-Agent": f"recalld-bench/{__version__}"}
        if args.api_key:
            self.headers["Authorization"] = f"Bearer {args.api_key}"
        self.server = ProcessSampler(server_pid, args.sample_interval) if server_pid else None
        self.llm = ProcessSampler(llm_pid) if llm_pid else None
        pg_uri = args.pg_uri if (args.backend == "postgres" or not args.spawn_server) else None
        self.database = PostgresBackends(pg_uri) if pg_uri else None
        self.notes: list[str] = []
        self.results: list[PhaseResult] = []

    async def run(self, progress: PlainProgress) -> dict[str, Any]:
        args = self.args
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        if self.server is not None:
            if self.server.available:
                self.server.start()
            else:
                self.notes.append(f"server pid {self.server.pid} is not readable in /proc: no CPU or RSS figures")
                self.server = None
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30) as control:
            outcome, health = await call(control, "GET", "/v1/health/")
            server_info = health.json() if is_ok(outcome) and health is not None else {"health": outcome}
            model, embedding = await choose_handles(control, args.model, args.embedding)
            pool = PoolWatcher(control)
            if not await pool.probe():
                self.notes.append(f"no pool figures ({pool.state}); looked for {', '.join(POOL_METRICS)}")
            ctx = BenchContext(
                tag=secrets.token_hex(3),
                model=model,
                embedding=embedding,
                agents_wanted=args.agents,
                messages_per_agent=args.messages,
                count=args.count,
                history_length=args.history_length,
                page_size=args.page_size,
                otid=args.otid,
            )
            progress.note(f"bench {self.url}: model {model}, embedding {embedding}, phases {','.join(args.phases)}")
            try:
                if "create" not in args.phases:
                    await self._setup_agents(ctx)
                    await self._analyze(progress)
                for name in args.phases:
                    phase = PHASE_TYPES[name]()
                    levels = (
                        [min(args.agents, max(args.concurrency))] if not phase.per_concurrency else args.concurrency
                    )
                    for concurrency in levels:
                        self.results.append(await self._run_phase(phase, ctx, concurrency, pool, progress))
                        if name == "create":
                            ctx.agent_ids = [ctx.created[i] for i in sorted(ctx.created)]
                            await self._analyze(progress)
            finally:
                if self.server is not None:
                    self.server.stop()
                if not args.keep_agents and not args.spawn_server:
                    await self._delete_agents(ctx)
        return {
            "started_at": started_at,
            "command": ["recalld", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
            "url": self.url,
            "server": {
                "health": server_info,
                "pid": self.server.pid if self.server else args.server_pid,
                "spawned": bool(args.spawn_server),
                "backend": args.backend if args.spawn_server else None,
                "metrics": pool.state,
            },
            "llm": {"fake": bool(args.fake_llm), "latency_ms": args.llm_latency_ms if args.fake_llm else None},
            "config": {
                "phases": args.phases,
                "concurrency": args.concurrency,
                "agents": args.agents,
                "messages": args.messages,
                "count": args.count,
                "duration_s": args.duration,
                "warmup": args.warmup,
                "history_length": args.history_length,
                "page_size": args.page_size,
                "model": model,
                "embedding": embedding,
                "tag": ctx.tag,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "bench_version": __version__,
            },
            "notes": self.notes + ([self.database.note] if self.database and self.database.note else []),
        }

    async def _analyze(self, progress: PlainProgress) -> None:
        """Planner statistics for a database the bench just filled. A fresh database has none until autovacuum's
        first round (up to a minute): every key starts with organization_id, and without statistics PostgreSQL
        takes it for selective and plans scans of the whole organization — a first minute a long-lived
        deployment never sees, and not what the bench measures."""
        if self.database is None:
            return
        import asyncpg

        try:
            conn = await asyncpg.connect(self.database.pg_uri.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                await conn.execute("ANALYZE")
            finally:
                await conn.close()
        except Exception as e:  # noqa: BLE001 - the run goes on; the report says statistics were not refreshed
            self.notes.append(f"ANALYZE after creating agents failed: {type(e).__name__}: {e}")
            return
        progress.note("ANALYZE: planner statistics refreshed after creating agents")

    async def _setup_agents(self, ctx: BenchContext) -> None:
        """Agents for the other phases when `create` is not among them (untimed)."""
        phase = PHASE_TYPES["create"]()
        async with _client(self.url, self.headers, min(8, ctx.agents_wanted), self.args.timeout) as http:
            await drive(phase, ctx, http, range(ctx.agents_wanted), min(8, ctx.agents_wanted), None, Recorder(), None)
        ctx.agent_ids = [ctx.created[i] for i in sorted(ctx.created)]

    async def _delete_agents(self, ctx: BenchContext) -> None:
        agents = ctx.all_agents()
        async with _client(self.url, self.headers, 8, self.args.timeout) as http:
            for start in range(0, len(agents), 8):
                await asyncio.gather(*(call(http, "DELETE", f"/v1/agents/{a}") for a in agents[start : start + 8]))

    async def _run_phase(
        self, phase: Phase, ctx: BenchContext, concurrency: int, pool: PoolWatcher, progress: PlainProgress
    ) -> PhaseResult:
        args = self.args
        result = PhaseResult(name=f"{phase.name}@c{concurrency}", phase=phase.name, concurrency=concurrency)
        async with _client(self.url, self.headers, concurrency, args.timeout) as http:
            if note := await phase.prepare(ctx, http):
                result.skipped = note
                progress.note(f"{result.name}: skipped — {note}")
                return result
            if args.warmup:
                await drive(phase, ctx, http, range(-1, -args.warmup - 1, -1), concurrency, None, Recorder(), None)
            total = phase.total(ctx)
            mismatches_before = ctx.search_mismatches
            progress.start_phase(result.name, total)
            server_began = self.server.begin() if self.server else None
            llm_began = self.llm.begin() if self.llm else None
            database_began = await self.database.snapshot() if self.database else None
            machine_began = machine_cpu_ticks()
            client_began = time.process_time()
            pool.begin()
            result.began_s = clock()
            deadline = result.began_s + args.duration if args.duration else None
            await drive(phase, ctx, http, range(total), concurrency, deadline, result.recorder, progress)
            result.ended_s = clock()
            result.client_cpu_s = round(time.process_time() - client_began, 3)
            result.pool = await pool.end()
            machine_ended = machine_cpu_ticks()
            if self.database is not None:
                result.database = PostgresBackends.cpu_s(database_began, await self.database.snapshot())
            if self.server is not None:
                result.server = self.server.end(server_began)
            if self.llm is not None and (llm_cpu := self.llm.end(llm_began)):
                result.llm_cpu_s = llm_cpu["cpu_s"]
            if machine_began and machine_ended and machine_ended[1] > machine_began[1]:
                busy_ticks = machine_ended[0] - machine_began[0]
                result.machine_cpu_busy_pct = round(100 * busy_ticks / (machine_ended[1] - machine_began[1]), 1)
                # CPU the machine spent on anything but the server, the bench and the scripted LLM: how
                # disturbed the measurement was (other jobs on the cores, the kernel, the database).
                measured = result.client_cpu_s + (result.server or {}).get("cpu_s", 0) + (result.llm_cpu_s or 0)
                measured += (result.database or {}).get("cpu_s", 0)
                result.other_cpu_s = round(max(0.0, busy_ticks / USER_HZ - measured), 2)
            if phase.name == "archival-search":
                result.checks["exact_text_not_first"] = ctx.search_mismatches - mismatches_before
            progress.end_phase()
        return result


def _default_out_dir() -> Path:
    return Path("bench") / "out" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _new_loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _serve_fake_llm_only(llm: ScriptedLLMProcess) -> int:
    print(f"scripted LLM at {llm.base_url} (point a server's OPENAI_BASE_URL there); Ctrl-C to stop", flush=True)
    try:
        assert llm.process is not None
        llm.process.wait()
    except KeyboardInterrupt:
        pass
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `recalld bench`."""
    if args.url and args.spawn_server:
        print("error: give --url or --spawn-server, not both", file=sys.stderr)
        return 2
    if not args.url and not args.spawn_server and not args.fake_llm:
        print("error: give --url URL, or --spawn-server (with --fake-llm for no API key)", file=sys.stderr)
        return 2
    if args.spawn_server and args.backend == "postgres" and not args.pg_uri:
        print("error: --backend postgres needs --pg-uri", file=sys.stderr)
        return 2
    extra_env = {}
    for item in args.server_env:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"error: --server-env wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra_env[name] = value
    # A log line per request would cost the client more than the request itself.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out_dir = Path(args.out) if args.out else _default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        llm = None
        if args.fake_llm:
            llm = ScriptedLLMProcess(args.llm_latency_ms, args.llm_port).start()
            stack.callback(llm.stop)
            if not args.url and not args.spawn_server:
                return _serve_fake_llm_only(llm)
        server = None
        if args.spawn_server:
            server = RecalldProcess(
                out_dir / "server.log",
                pg_uri=args.pg_uri if args.backend == "postgres" else None,
                openai_base_url=llm.base_url if llm else None,
                extra_env=extra_env,
            )
            stack.callback(server.stop)
            server.start()
        url = server.url if server else args.url
        server_pid = args.server_pid or (server.pid if server else None)
        bench = Bench(args, url, server_pid, llm.pid if llm else None)
        with make_progress(args.quiet) as progress:
            with asyncio.Runner(loop_factory=_new_loop_factory()) as runner:
                header = runner.run(bench.run(progress))

    if not args.no_plots:
        _plots(out_dir, bench)
    report_path = write_report(out_dir, header, bench.results)
    print(summary_table(json.loads(report_path.read_text())))
    for note in bench.notes:
        print(f"note: {note}")
    print(f"report: {report_path}")
    return 0


def _plots(out_dir: Path, bench: Bench) -> None:
    try:
        from recalld.bench.plots import plot_all

        plot_all(out_dir, {r.name: r.recorder for r in bench.results if not r.skipped})
    except ImportError as e:
        bench.notes.append(f"no plots: {e.name} is not installed (pip install 'recalld[bench]')")
