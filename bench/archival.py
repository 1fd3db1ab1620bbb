"""Archival memory benchmark: N agents insert passages concurrently, then search them.

In the spirit of the load test Letta's archival memory was measured with: every agent is its own client
(30 by default), each inserting its passages one request after another, all agents at once; then each
searching its archive the same way. Reports throughput and p50/p95/p99 latency per phase and draws one PNG
with the latency distribution, the CDF and the requests in flight over time.

    python bench/archival.py --spawn sqlite            # start recalld on a temp SQLite file
    python bench/archival.py --spawn postgres --pg-uri postgresql://postgres@127.0.0.1:5432/postgres
    python bench/archival.py --spawn postgres --label pgvector \
        --pg-uri 'postgresql://postgres@/postgres?host=<socket dir of a PostgreSQL with pgvector>'
    python bench/archival.py --url http://127.0.0.1:8283  # a running server (local embeddings by default)

Passages are one-sentence facts about a user (about 19 word-pieces, 85 characters), queries short questions
(about 11 word-pieces). With --runs N the whole benchmark runs N times (fresh agents each time) and the
median is reported. A spawned server's CPU time per operation is reported too: unlike throughput, it does
not depend on what else the machine is running. Needs httpx; the plot needs matplotlib
(`pip install -e .[bench]`). Traffic goes only to the given URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from recalld.bench.procstat import ProcessSampler
from recalld.bench.recorder import percentile
from recalld.bench.spawn import free_port

NAMES = ["Maria", "Tomás", "Aiko", "Priya", "Jonas", "Fatima", "Liam", "Chen", "Olga", "Kwame", "Sofia", "Ravi"]
RELATIONS = ["sister", "brother", "cousin", "neighbour", "manager", "best friend", "uncle", "daughter"]
CITIES = ["Lisbon", "Osaka", "Nairobi", "Toronto", "Krakow", "Valparaíso", "Hanoi", "Edinburgh", "Lyon", "Perth"]
JOBS = ["marine biologist", "carpenter", "air traffic controller", "pastry chef", "nurse", "civil engineer",
        "violin teacher", "firefighter", "data analyst", "beekeeper"]
HOBBIES = ["bouldering", "growing tomatoes", "restoring old motorbikes", "playing chess online", "birdwatching",
           "baking sourdough", "sailing", "learning Japanese", "running half marathons", "knitting"]
FOODS = ["spicy ramen", "mango sticky rice", "pierogi", "fish tacos", "mushroom risotto", "lamb tagine"]


def fact(rng: random.Random) -> str:
    """A passage like the ones an assistant keeps about its user: one or two sentences."""
    name, rel, city = rng.choice(NAMES), rng.choice(RELATIONS), rng.choice(CITIES)
    forms = [
        f"{name}'s {rel} moved to {city} in {rng.randint(1995, 2025)} and works as a {rng.choice(JOBS)}.",
        f"On weekends {name} enjoys {rng.choice(HOBBIES)} with their {rel}, who lives in {city}.",
        f"{name} is allergic to peanuts but loves {rng.choice(FOODS)}, especially the version served in {city}.",
        f"The user mentioned that {name} will visit {city} next {rng.choice(['spring', 'summer', 'autumn'])} "
        f"for a {rng.choice(JOBS)} conference.",
    ]
    return rng.choice(forms)


def question(rng: random.Random) -> str:
    name, rel = rng.choice(NAMES), rng.choice(RELATIONS)
    forms = [
        f"Where does {name}'s {rel} live now?",
        f"What does {name} like to do in their free time?",
        f"Which foods should I avoid when cooking for {name}?",
        f"Is {name} travelling anywhere soon?",
    ]
    return rng.choice(forms)


@dataclass
class Phase:
    name: str
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    began: float = 0.0
    finished: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0

    def record(self, start: float, end: float, status: int | str) -> None:
        if status == 200:
            self.starts.append(start)
            self.ends.append(end)
        else:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1

    @property
    def latencies_ms(self) -> list[float]:
        return sorted((e - s) * 1000 for s, e in zip(self.starts, self.ends, strict=True))

    @property
    def throughput(self) -> float:
        return len(self.starts) / max(self.finished - self.began, 1e-9)

    def summary(self) -> dict:
        lat = self.latencies_ms
        server_cpu = round(1000 * self.server_cpu_s / len(lat), 2) if self.server_cpu_s and lat else None
        return {
            "ok": len(lat),
            "errors": self.errors,
            "seconds": round(self.finished - self.began, 3),
            "per_s": round(self.throughput, 1),
            "p50_ms": round(percentile(lat, 50), 1),
            "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(lat[-1], 1) if lat else None,
            # CPU per operation does not depend on what else the machine runs; throughput does.
            "server_cpu_ms_per_op": server_cpu,
            "client_cpu_ms_per_op": round(1000 * self.client_cpu_s / len(lat), 2) if lat else None,
        }


async def create_agents(http: httpx.AsyncClient, count: int, embedding: str | None) -> list[str]:
    body: dict = {
        # A chat model is never called here; an inline llm_config needs no provider.
        "llm_config": {"model": "bench-model", "model_endpoint_type": "openai", "context_window": 8192},
        "include_base_tools": False,
    }
    if embedding:
        body["embedding"] = embedding
    ids = []
    for i in range(count):
        r = await http.post("/v1/agents/", json={**body, "name": f"bench-archival-{i}"})
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


async def run_phase(name: str, agents: list[str], per_agent: int, make_request, seed: int,
                    server_pid: int | None) -> Phase:
    phase = Phase(name)

    async def agent_loop(index: int, agent_id: str) -> None:
        rng = random.Random(seed * 1000 + index)
        for _ in range(per_agent):
            start = time.perf_counter()
            try:
                status = (await make_request(agent_id, rng)).status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            phase.record(start, time.perf_counter(), status)

    # `recalld bench`'s CPU reading: the server's whole process tree (sandboxed tools included), from /proc.
    sampler = ProcessSampler(server_pid) if server_pid is not None else None
    server_before, client_before = (sampler.begin() if sampler else None), time.process_time()
    phase.began = time.perf_counter()
    await asyncio.gather(*(agent_loop(i, a) for i, a in enumerate(agents)))
    phase.finished = time.perf_counter()
    server_used = sampler.end(server_before) if sampler else None
    if server_used is not None:
        phase.server_cpu_s = server_used["cpu_s"]
    phase.client_cpu_s = time.process_time() - client_before
    return phase


async def one_run(url: str, args: argparse.Namespace, run: int) -> dict:
    limits = httpx.Limits(max_connections=args.agents + 4, max_keepalive_connections=args.agents + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as http:
        agents = await create_agents(http, args.agents, args.embedding)
        inserted: dict[str, list[str]] = {a: [] for a in agents}

        async def insert(agent_id: str, rng: random.Random) -> httpx.Response:
            text = fact(rng)
            inserted[agent_id].append(text)
            return await http.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": text})

        async def search(agent_id: str, rng: random.Random) -> httpx.Response:
            params = {"query": question(rng), "top_k": 5}
            return await http.get(f"/v1/agents/{agent_id}/archival-memory/search", params=params)

        inserts = await run_phase("insert", agents, args.passages, insert, seed=run, server_pid=args.server_pid)
        searches = await run_phase("search", agents, args.searches, search, seed=run + 7919,
                                   server_pid=args.server_pid)

        # Correctness spot check: the exact text of a stored passage comes back first.
        misses = 0
        for agent_id in agents[:5]:
            text = inserted[agent_id][0]
            r = await http.get(f"/v1/agents/{agent_id}/archival-memory/search", params={"query": text, "top_k": 1})
            if r.status_code != 200 or r.json()["results"][0]["content"] != text:
                misses += 1
        if not args.keep_agents:
            for agent_id in agents:
                await http.delete(f"/v1/agents/{agent_id}")
    return {"insert": inserts, "search": searches, "exact_text_misses": misses}


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    colors = {"insert": "tab:blue", "search": "tab:orange"}
    for name in ("insert", "search"):
        lat = sorted(v for run in runs for v in run[name].latencies_ms)
        axes[0].hist(lat, bins=60, alpha=0.6, color=colors[name], label=f"{name} (n={len(lat)})")
        axes[1].plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], color=colors[name], label=name)
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            axes[1].axvline(percentile(lat, q), color=colors[name], linestyle=style, linewidth=0.8)
    axes[0].set(title="Latency distribution (all runs)", xlabel="latency (ms)", ylabel="requests")
    axes[0].legend()
    axes[1].set(title="Latency CDF (lines: p50 / p95 / p99)", xlabel="latency (ms)", ylabel="fraction of requests")
    axes[1].legend()
    axes[1].grid(alpha=0.3)

    # Requests in flight over time, for the run of median insert throughput, both phases on one clock.
    run = sorted(runs, key=lambda r: r["insert"].throughput)[len(runs) // 2]
    origin = run["insert"].began
    for name in ("insert", "search"):
        events = sorted([(s - origin, 1) for s in run[name].starts] + [(e - origin, -1) for e in run[name].ends])
        xs, ys, level = [], [], 0
        for t, delta in events:
            xs.append(t)
            ys.append(level)
            level += delta
            xs.append(t)
            ys.append(level)
        axes[2].plot(xs, ys, color=colors[name], label=f"{name}: {run[name].throughput:.0f}/s")
    axes[2].set(title="Concurrency over time (median run)", xlabel="seconds", ylabel="requests in flight")
    axes[2].legend()
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


class SpawnedServer:
    """`recalld serve` on a free port with a fresh database, stopped at the end."""

    def __init__(self, backend: str, pg_admin_uri: str | None):
        self.dir = Path(tempfile.mkdtemp(prefix="recalld-bench-"))
        self.port = free_port()
        self.pg_admin_uri = pg_admin_uri
        self.db_uri = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECALLD_", "LETTA_", "OPENAI_"))}
        env.update(RECALLD_DIR=str(self.dir), RECALLD_LOG_LEVEL="warning")
        if backend == "postgres":
            if not pg_admin_uri:
                raise SystemExit("--spawn postgres needs --pg-uri (an admin URI; a fresh database is made)")
            name = f"recalld_bench_{uuid.uuid4().hex[:10]}"
            subprocess.run(["psql", pg_admin_uri, "-qc", f'CREATE DATABASE "{name}"'], check=True)
            location, _, query = pg_admin_uri.partition("?")
            self.db_uri = f"{location.rpartition('/')[0]}/{name}" + (f"?{query}" if query else "")
            env["RECALLD_PG_URI"] = self.db_uri
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - open for the process's lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recalld", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit((self.dir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/v1/health/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("recalld did not become healthy")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.db_uri:
            name = self.db_uri.partition("?")[0].rsplit("/", 1)[1]
            subprocess.run(["psql", self.pg_admin_uri, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running recalld (or Letta) server")
    target.add_argument("--spawn", choices=("sqlite", "postgres"), help="start recalld for the run")
    parser.add_argument("--pg-uri", help="admin PostgreSQL URI for --spawn postgres")
    parser.add_argument("--agents", type=int, default=30, help="concurrent agents (default 30)")
    parser.add_argument("--passages", type=int, default=20, help="passages each agent inserts (default 20)")
    parser.add_argument("--searches", type=int, default=20, help="searches each agent makes (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="repeat the whole benchmark; the median is reported")
    parser.add_argument("--embedding", default=None, help="embedding handle (default: the server's default)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keep-agents", action="store_true")
    parser.add_argument("--out", default="bench/out/archival", help="directory for report.json and archival.png")
    parser.add_argument("--server-pid", type=int, default=None, help="PID of a --url server, to measure its CPU")
    parser.add_argument("--label", default=None, help="what the report and plot call the setup (default: the backend)")
    args = parser.parse_args()

    server = SpawnedServer(args.spawn, args.pg_uri) if args.spawn else None
    url = server.url if server else args.url
    if server:
        args.server_pid = server.process.pid
    load_before = os.getloadavg()
    try:
        runs = []
        for run in range(args.runs):
            result = asyncio.run(one_run(url, args, run))
            runs.append(result)
            ins, sea = result["insert"].summary(), result["search"].summary()
            print(f"run {run + 1}: insert {ins['per_s']}/s p50 {ins['p50_ms']} p95 {ins['p95_ms']} p99 {ins['p99_ms']}"
                  f" ms | search {sea['per_s']}/s p50 {sea['p50_ms']} p95 {sea['p95_ms']} p99 {sea['p99_ms']} ms"
                  f" | server CPU/op {ins['server_cpu_ms_per_op']}/{sea['server_cpu_ms_per_op']} ms"
                  f" | errors {ins['errors'] or 0}/{sea['errors'] or 0}", flush=True)
    finally:
        if server:
            server.stop()

    def median_run(name: str) -> dict:
        ordered = sorted(runs, key=lambda r: r[name].throughput)
        return ordered[len(ordered) // 2][name].summary()

    report = {
        "url": url,
        "backend": args.label or args.spawn or "external",
        "agents": args.agents,
        "passages_per_agent": args.passages,
        "searches_per_agent": args.searches,
        "runs": args.runs,
        "insert_per_s_each_run": [round(r["insert"].throughput, 1) for r in runs],
        "search_per_s_each_run": [round(r["search"].throughput, 1) for r in runs],
        "insert_median_run": median_run("insert"),
        "search_median_run": median_run("search"),
        "insert_per_s_median": round(statistics.median(r["insert"].throughput for r in runs), 1),
        "search_per_s_median": round(statistics.median(r["search"].throughput for r in runs), 1),
        "exact_text_first_misses": sum(r["exact_text_misses"] for r in runs),
        "machine": {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before]},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    try:
        title = (f"recalld archival memory — {args.agents} agents, {args.passages} inserts + {args.searches} searches "
                 f"each, {args.runs} runs ({report['backend']})")
        plot(runs, out / "archival.png", title)
        print(f"plot: {out / 'archival.png'}")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e .[bench])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
