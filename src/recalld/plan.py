"""`recalld plan`: size a deployment from a `recalld bench` report and a target load, showing the arithmetic.

Everything here is a pure function of the parsed report and the target: `measure()` reads the figures a plan
needs (and names the phase each came from), `make_plan()` turns them into recommendations, each a `Step` that
carries its formula, the numbers put into it and where those numbers came from. The model (docs/SCALING.md):

* a turn costs an instance `cpu_ms` of CPU (measured), so one instance serves at most 1000 x cores / cpu_ms
  turns per second; we plan each instance at `cpu_target` of that (and never above what the bench measured);
* a turn spends `llm_calls x L` waiting on the model plus `server_ms` in the server, so by Little's law
  R x (llm_calls x L + server_ms) / 1000 turns are in flight -- nearly all of them just waiting, which costs
  an instance memory and sockets, not CPU or database connections (no connection is held across an LLM call);
* a turn holds a database connection at most during its `server_ms`, so an instance at rate r keeps at most
  r x server_ms / 1000 connections busy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# PostgreSQL connections kept free for what is not an instance's pool: superuser_reserved_connections (3),
# migrations, monitoring, an operator's psql.
PG_HEADROOM_CONNECTIONS = 10
# Above this many direct connections, PostgreSQL spends more on backends than on queries: put PgBouncer in front.
PGBOUNCER_ABOVE_CONNECTIONS = 200
# Overflow as a share of the pool, as in the defaults (25 + 10).
OVERFLOW_SHARE = 0.4
MIN_POOL_SIZE = 5
# Connections busy on average are doubled for the pool: turns arrive in bursts, and the figure is a mean.
POOL_HEADROOM = 2.0
# A bound we choose, not a measurement: half the 512 connections an instance's LLM client keeps (api/app.py).
DEFAULT_MAX_TURNS_PER_INSTANCE = 256


class ReportError(Exception):
    """The report cannot support a plan (missing phases or figures)."""


@dataclass(frozen=True)
class Target:
    agents: int
    messages_per_s: float
    llm_latency_ms: float
    instance_cpus: float = 1.0
    pool_size: int | None = None
    llm_calls_per_turn: float = 1.0
    max_turns_per_instance: int = DEFAULT_MAX_TURNS_PER_INSTANCE
    cpu_target: float = 0.7
    burst: float = 2.0


@dataclass(frozen=True)
class Figure:
    """One measured input and the report phase it came from."""

    value: float
    source: str

    def cite(self, unit: str = "", digits: int = 2) -> str:
        return f"{self.value:.{digits}f}{unit} ({self.source})"


@dataclass(frozen=True)
class Measured:
    report: str
    backend: str | None
    cpu_ms: Figure  # server CPU per message
    server_ms: Figure  # time a turn spends in the server, besides waiting on the model
    ops_per_s: Figure | None  # the most messages/s measured -- a capacity only when the bench's LLM took 0 ms
    concurrency_max: int
    db_cpu_ms: Figure | None = None
    peak_rss_mb: Figure | None = None
    pool_checked_out: Figure | None = None  # most connections seen lent out ...
    pool_rate: float | None = None  # ... at this many messages/s


@dataclass
class Step:
    name: str
    value: Any
    formula: str
    arithmetic: str
    sources: list[str] = field(default_factory=list)


@dataclass
class Plan:
    target: Target
    measured: Measured
    steps: list[Step]
    notes: list[str]

    def value(self, name: str) -> Any:
        return next(s.value for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": asdict(self.target),
            "measured": asdict(self.measured),
            "recommendation": {s.name: s.value for s in self.steps},
            "steps": [asdict(s) for s in self.steps],
            "notes": self.notes,
        }


def _send_phases(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in report.get("phases", []) if p.get("phase") == "send" and "skipped" not in p and p.get("ok")]


def measure(report: dict[str, Any], name: str = "report") -> Measured:
    """The figures a plan needs, each tied to its phase; ReportError when the report lacks them."""
    sends = _send_phases(report)
    if not sends:
        raise ReportError(
            f"{name} has no `send` phase with successful messages; run `recalld bench --spawn-server --fake-llm "
            "--phases create,send` (or include `send` in --phases) and plan from that report"
        )
    timed = [p for p in sends if (p.get("server") or {}).get("cpu_ms_per_op") is not None]
    if not timed:
        raise ReportError(
            f"{name}: its send phases carry no server CPU figures (the server was not on the bench's machine); "
            "rerun with --spawn-server, or with --url and --server-pid"
        )
    llm = report.get("llm") or {}
    bench_llm_ms = llm.get("latency_ms") if llm.get("fake") else None

    # CPU per message: the costliest send phase (more concurrency costs a little more per message).
    costly = max(timed, key=lambda p: p["server"]["cpu_ms_per_op"])
    cpu_ms = Figure(costly["server"]["cpu_ms_per_op"], f"phase {costly['name']}, server.cpu_ms_per_op")
    # Server time of a turn: the median latency at the lowest concurrency (the least queueing), less the
    # scripted LLM's delay. Still includes some queueing for the CPU, so it errs on the safe side.
    calm = min(sends, key=lambda p: p["concurrency"])
    p50 = calm["latency_ms"]["p50"]
    if bench_llm_ms is not None:
        server_ms = Figure(
            max(p50 - bench_llm_ms, cpu_ms.value),
            f"phase {calm['name']}, latency_ms.p50 {p50:.1f} ms less the scripted LLM's {bench_llm_ms:g} ms",
        )
    else:
        server_ms = Figure(p50, f"phase {calm['name']}, latency_ms.p50 (includes the real LLM's time)")
    fastest = max(sends, key=lambda p: p["ops_per_s"])
    ops_per_s = None
    if bench_llm_ms == 0:
        ops_per_s = Figure(fastest["ops_per_s"], f"phase {fastest['name']}, ops_per_s")
    db = [p for p in sends if (p.get("database") or {}).get("cpu_ms_per_op") is not None]
    db_cpu_ms = None
    if db:
        worst = max(db, key=lambda p: p["database"]["cpu_ms_per_op"])
        db_cpu_ms = Figure(worst["database"]["cpu_ms_per_op"], f"phase {worst['name']}, database.cpu_ms_per_op")
    rss = [p for p in timed if p["server"].get("peak_rss_bytes")]
    peak_rss = None
    if rss:
        big = max(rss, key=lambda p: p["server"]["peak_rss_bytes"])
        peak_rss = Figure(big["server"]["peak_rss_bytes"] / 2**20, f"phase {big['name']}, server.peak_rss_bytes")
    pooled = [p for p in sends if (p.get("pool") or {}).get("checked_out_max") is not None]
    pool_fig, pool_rate = None, None
    if pooled:
        busiest = max(pooled, key=lambda p: p["pool"]["checked_out_max"])
        pool_fig = Figure(busiest["pool"]["checked_out_max"], f"phase {busiest['name']}, pool.checked_out_max")
        pool_rate = busiest["ops_per_s"]
    return Measured(
        report=name,
        backend=(report.get("server") or {}).get("backend"),
        cpu_ms=cpu_ms,
        server_ms=server_ms,
        ops_per_s=ops_per_s,
        concurrency_max=max(p["concurrency"] for p in sends),
        db_cpu_ms=db_cpu_ms,
        peak_rss_mb=peak_rss,
        pool_checked_out=pool_fig,
        pool_rate=pool_rate,
    )


def _n(x: float) -> str:
    """A number as the arithmetic shows it: integers bare, others to 2 decimals."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


def make_plan(m: Measured, t: Target) -> Plan:
    """Recommendations for target `t` from measurements `m`, each with its arithmetic."""
    steps: list[Step] = []
    notes: list[str] = []
    add = steps.append
    cores = min(t.instance_cpus, 1.0)
    add(Step("workers_per_instance", 1,
             "1: `recalld serve` runs one uvicorn worker (one event loop, metrics per process); scale instances",
             f"usable cores per instance = min(instance_cpus, 1) = min({_n(t.instance_cpus)}, 1) = {_n(cores)}",
             [f"target --instance-cpus {_n(t.instance_cpus)}"]))
    if t.instance_cpus > 1:
        notes.append(f"an instance does its turn work on one core: {_n(t.instance_cpus)} CPUs per instance leave "
                     f"{_n(t.instance_cpus - 1)} for threads (embedding); prefer 1-CPU instances and more replicas")

    cpu_cap = 1000 * cores / m.cpu_ms.value
    add(Step("cpu_capacity_per_instance_msgs_per_s", round(cpu_cap, 1), "1000 x usable cores / server CPU ms per msg",
             f"1000 x {_n(cores)} / {m.cpu_ms.value:.2f} = {cpu_cap:.1f}", [m.cpu_ms.cite(" ms")]))
    ceiling, sources = cpu_cap, [m.cpu_ms.cite(" ms")]
    arithmetic = f"{t.cpu_target:g} x {cpu_cap:.1f}"
    if m.ops_per_s is not None:
        measured_cap = m.ops_per_s.value * cores
        ceiling = min(cpu_cap, measured_cap)
        sources.append(m.ops_per_s.cite(" msg/s", 1))
        arithmetic = f"{t.cpu_target:g} x min({cpu_cap:.1f}, {m.ops_per_s.value:.1f} x {_n(cores)})"
    else:
        notes.append("the report's LLM was not the scripted one at 0 ms, so its throughput is not a capacity; "
                     "capacity comes from CPU per message alone")
    per_instance = t.cpu_target * ceiling
    add(Step("planned_msgs_per_s_per_instance", round(per_instance, 1),
             "cpu_target x min(CPU capacity, measured throughput x usable cores)",
             f"{arithmetic} = {per_instance:.1f}", sources))

    turn_ms = t.llm_calls_per_turn * t.llm_latency_ms + m.server_ms.value
    in_flight = t.messages_per_s * turn_ms / 1000
    add(Step("turns_in_flight", round(in_flight, 1), "Little's law: R x (llm_calls x L + server ms per turn) / 1000",
             f"{_n(t.messages_per_s)} x ({_n(t.llm_calls_per_turn)} x {_n(t.llm_latency_ms)} + "
             f"{m.server_ms.value:.1f}) / 1000 = {in_flight:.1f}",
             ["target --messages-per-second, --llm-latency-ms, --llm-calls-per-turn", m.server_ms.cite(" ms", 1)]))
    agent_rate = t.agents * 1000 / turn_ms
    if t.messages_per_s > agent_rate:
        notes.append(f"{t.agents} agents run at most {agent_rate:.1f} turns/s (one turn at a time per agent, "
                     f"{turn_ms:.0f} ms each): the target rate queues on the agents' leases whatever the instances")

    by_cpu = math.ceil(t.messages_per_s / per_instance)
    by_turns = math.ceil(in_flight / t.max_turns_per_instance)
    instances = max(1, by_cpu, by_turns)
    add(Step("instances", instances,
             "max(1, ceil(R / planned msg/s per instance), ceil(turns in flight / max turns per instance))",
             f"max(1, ceil({_n(t.messages_per_s)} / {per_instance:.1f}), ceil({in_flight:.1f} / "
             f"{t.max_turns_per_instance})) = max(1, {by_cpu}, {by_turns}) = {instances}",
             [f"max turns per instance {t.max_turns_per_instance} (--max-turns-per-instance; a chosen bound, "
              f"the bench measured up to {m.concurrency_max} in flight)"]))
    if t.max_turns_per_instance > m.concurrency_max and by_turns > max(1, by_cpu):
        notes.append(f"instances are set by turns in flight, and the report measured at most {m.concurrency_max} "
                     "per instance: bench at that concurrency with the real LLM latency before trusting it")

    min_replicas = instances
    max_replicas = max(min_replicas + 1, math.ceil(instances * t.burst))
    add(Step("hpa_min_replicas", min_replicas, "instances: what the target rate needs at all times",
             f"{instances}", ["instances"]))
    if instances == 1:
        notes.append("one instance carries the target: run it alone (SQLite will do, no Redis), or keep 2 replicas "
                     "for availability (then PostgreSQL, and Redis for cheap leases)")
    add(Step("hpa_max_replicas", max_replicas, "max(min + 1, ceil(instances x burst))",
             f"max({min_replicas} + 1, ceil({instances} x {_n(t.burst)})) = {max_replicas}", ["instances"]))
    rate_i = t.messages_per_s / instances
    # Connections an instance keeps busy: Little's law on server time, or the measured peak scaled to this rate.
    busy = rate_i * m.server_ms.value / 1000
    busy_src = [m.server_ms.cite(" ms", 1)]
    busy_arith = f"{rate_i:.1f} x {m.server_ms.value:.1f} / 1000 = {busy:.2f}"
    if m.pool_checked_out is not None and m.pool_rate:
        scaled = m.pool_checked_out.value * rate_i / m.pool_rate
        busy_arith += f"; measured {_n(m.pool_checked_out.value)} at {m.pool_rate:.1f} msg/s scaled: {scaled:.2f}"
        busy_src.append(m.pool_checked_out.cite("", 0))
        busy = max(busy, scaled)
    add(Step("db_connections_busy_per_instance", round(busy, 2),
             "max(r x server ms per turn / 1000, measured checked-out peak x r / its rate), r = R / instances",
             busy_arith, busy_src))
    if t.pool_size is not None:
        pool_size = t.pool_size
        pool_arith = f"given: {pool_size}"
        if pool_size < busy:
            notes.append(f"--pool-size {pool_size} is below the {busy:.1f} connections an instance keeps busy")
    else:
        pool_size = max(MIN_POOL_SIZE, math.ceil(POOL_HEADROOM * busy))
        pool_arith = f"max({MIN_POOL_SIZE}, ceil({_n(POOL_HEADROOM)} x {busy:.2f})) = {pool_size}"
    add(Step("pool_size", pool_size, f"max({MIN_POOL_SIZE}, ceil({_n(POOL_HEADROOM)} x busy connections))",
             pool_arith, ["db_connections_busy_per_instance"] if t.pool_size is None else ["target --pool-size"]))
    overflow = math.ceil(OVERFLOW_SHARE * pool_size)
    add(Step("max_overflow", overflow, f"ceil({OVERFLOW_SHARE} x pool_size), the defaults' ratio (10 / 25)",
             f"ceil({OVERFLOW_SHARE} x {pool_size}) = {overflow}", ["pool_size"]))
    direct = max_replicas * (pool_size + overflow) + PG_HEADROOM_CONNECTIONS
    add(Step("pg_max_connections", direct,
             f"max replicas x workers x (pool_size + max_overflow) + {PG_HEADROOM_CONNECTIONS} (reserved, "
             "migrations, monitoring)",
             f"{max_replicas} x 1 x ({pool_size} + {overflow}) + {PG_HEADROOM_CONNECTIONS} = {direct}",
             ["hpa_max_replicas", "pool_size", "max_overflow"]))

    use_bouncer = direct > PGBOUNCER_ABOVE_CONNECTIONS
    # Connections the whole cluster keeps busy at its peak rate (R x burst), at the per-message hold time above.
    conn_ms = 1000 * busy / rate_i
    peak_busy = t.messages_per_s * t.burst * conn_ms / 1000
    bouncer_pool = max(10, math.ceil(POOL_HEADROOM * peak_busy))
    client_conns = max_replicas * t.max_turns_per_instance + PG_HEADROOM_CONNECTIONS
    add(Step("pgbouncer", {
        "recommended": use_bouncer,
        "default_pool_size": bouncer_pool,
        "max_client_conn": client_conns,
        "pg_max_connections": bouncer_pool + PG_HEADROOM_CONNECTIONS,
        "recalld_env": {"RECALLD_DISABLE_POOLING": "true"},
    },
        f"recommended when pg_max_connections > {PGBOUNCER_ABOVE_CONNECTIONS}; default_pool_size = max(10, "
        f"ceil({_n(POOL_HEADROOM)} x R x burst x connection ms per msg / 1000)), connection ms per msg = "
        "1000 x busy connections per instance / its msg/s; max_client_conn = max replicas x max turns per "
        "instance + headroom (with pooling off each in-flight transaction is a client connection)",
        f"{direct} {'>' if use_bouncer else '<='} {PGBOUNCER_ABOVE_CONNECTIONS}; max(10, ceil({_n(POOL_HEADROOM)} x "
        f"{_n(t.messages_per_s)} x {_n(t.burst)} x {conn_ms:.1f} / 1000)) = {bouncer_pool} (connection ms per msg "
        f"= 1000 x {busy:.2f} / {rate_i:.1f}); {max_replicas} x {t.max_turns_per_instance} + "
        f"{PG_HEADROOM_CONNECTIONS} = {client_conns}",
        ["db_connections_busy_per_instance", "hpa_max_replicas"]))

    lease_tx = 2 * t.messages_per_s
    add(Step("redis", "required" if instances > 1 else "optional",
             "required when the target needs more than one instance: cluster-wide leases then cost no database "
             "work; optional for one (the PostgreSQL lease table covers a replica a burst adds)",
             f"instances {instances}; without Redis: 2 x R = 2 x {_n(t.messages_per_s)} = {_n(lease_tx)} extra "
             "write transactions/s (take + release a lease row), plus a renewal per turn every lease_ttl / 3",
             ["instances"]))

    at_capacity = per_instance * turn_ms / 1000
    queued_target = max(1, math.floor(min(at_capacity, t.cpu_target * t.max_turns_per_instance)))
    add(Step("hpa_target_turns_queued_per_pod", queued_target,
             "floor(min(planned msg/s per instance x turn ms / 1000, cpu_target x max turns per instance)): the "
             "recalld_turns_queued an instance holds at its planned rate (Little's law); also CPU at cpu_target",
             f"floor(min({per_instance:.1f} x {turn_ms:.1f} / 1000, {t.cpu_target:g} x {t.max_turns_per_instance}))"
             f" = {queued_target}; CPU target {t.cpu_target * 100:.0f}% of the pod's CPU request",
             ["planned_msgs_per_s_per_instance", "turns_in_flight"]))

    if m.db_cpu_ms is not None:
        pg_cores = t.messages_per_s * m.db_cpu_ms.value / 1000
        add(Step("postgres_cores_busy", round(pg_cores, 2), "R x PostgreSQL CPU ms per msg / 1000",
                 f"{_n(t.messages_per_s)} x {m.db_cpu_ms.value:.2f} / 1000 = {pg_cores:.2f}",
                 [m.db_cpu_ms.cite(" ms")]))
    else:
        notes.append("no PostgreSQL CPU figures in the report: bench with --backend postgres --pg-uri on the "
                     "database's machine to size the database")
    if m.peak_rss_mb is not None:
        add(Step("memory_per_instance_mb", round(m.peak_rss_mb.value), "peak RSS of the server under the bench",
                 f"{m.peak_rss_mb.value:.0f} MB measured", [m.peak_rss_mb.cite(" MB", 0)]))
    if m.backend == "sqlite":
        notes.append("measured on SQLite: more than one instance needs PostgreSQL, which costs more CPU per message "
                     "(docs/SCALING.md); plan from a `--backend postgres` report for a cluster")
    return Plan(t, m, steps, notes)


def render_text(plan: Plan) -> str:
    t, m = plan.target, plan.measured
    lines = [
        f"recalld plan for {t.agents} agents, {_n(t.messages_per_s)} msg/s, LLM {_n(t.llm_latency_ms)} ms "
        f"x {_n(t.llm_calls_per_turn)} call(s) per turn, {_n(t.instance_cpus)} CPU per instance",
        f"from {m.report} (backend {m.backend or 'unknown'})",
        "",
    ]
    for s in plan.steps:
        value = json.dumps(s.value) if isinstance(s.value, dict) else s.value
        lines.append(f"{s.name} = {value}")
        lines.append(f"    formula: {s.formula}")
        lines.append(f"    = {s.arithmetic}")
        if s.sources:
            lines.append(f"    from: {'; '.join(s.sources)}")
    if plan.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in plan.notes)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `recalld plan` on `parser`."""
    parser.add_argument("--report", required=True, help="report.json written by `recalld bench`")
    parser.add_argument("--agents", type=int, required=True, help="agents the deployment holds")
    parser.add_argument("--messages-per-second", type=float, required=True, help="target turns per second (R)")
    parser.add_argument("--llm-latency-ms", type=float, required=True, help="the model's latency per call (L)")
    parser.add_argument("--instance-cpus", type=float, default=1.0, help="CPUs per instance (default 1)")
    parser.add_argument("--pool-size", type=int, default=None, help="fix pool_size instead of deriving it")
    parser.add_argument("--llm-calls-per-turn", type=float, default=1.0, help="model calls per turn (default 1)")
    parser.add_argument(
        "--max-turns-per-instance",
        type=int,
        default=DEFAULT_MAX_TURNS_PER_INSTANCE,
        help=f"turns one instance may hold in flight (default {DEFAULT_MAX_TURNS_PER_INSTANCE})",
    )
    parser.add_argument("--cpu-target", type=float, default=0.7, help="CPU share an instance is planned at (0.7)")
    parser.add_argument("--burst", type=float, default=2.0, help="max replicas / instances needed (default 2)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    """Entry point of `recalld plan`: 0 with a plan, 2 when the report or the target cannot give one."""
    try:
        report = json.loads(Path(args.report).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: cannot read the report {args.report}: {e}", file=sys.stderr)
        return 2
    if not isinstance(report, dict):
        print(f"error: {args.report} is not a `recalld bench` report", file=sys.stderr)
        return 2
    if args.agents < 1 or args.messages_per_second <= 0 or args.llm_latency_ms < 0 or args.instance_cpus <= 0:
        print("error: --agents and --messages-per-second must be positive, --llm-latency-ms not negative, "
              "--instance-cpus positive", file=sys.stderr)
        return 2
    if not 0 < args.cpu_target <= 1 or args.burst < 1 or args.max_turns_per_instance < 1:
        print("error: --cpu-target must be in (0, 1], --burst at least 1, --max-turns-per-instance at least 1",
              file=sys.stderr)
        return 2
    target = Target(
        agents=args.agents,
        messages_per_s=args.messages_per_second,
        llm_latency_ms=args.llm_latency_ms,
        instance_cpus=args.instance_cpus,
        pool_size=args.pool_size,
        llm_calls_per_turn=args.llm_calls_per_turn,
        max_turns_per_instance=args.max_turns_per_instance,
        cpu_target=args.cpu_target,
        burst=args.burst,
    )
    try:
        measured = measure(report, args.report)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plan = make_plan(measured, target)
    print(json.dumps(plan.to_json(), indent=2) if args.json else render_text(plan))
    return 0
