#!/usr/bin/env python3
"""Memory of a recalld instance against the number of agents that exist: resident memory (RSS) of
the server idle, while one message goes to a sample of K agents, and while one message goes to every agent --
with 10, 1,000 and 10,000 agents in the database, on SQLite and PostgreSQL.

What it shows: an instance's memory must grow with the turns in flight, never with the agents that merely
exist (every durable fact is in the database; per-agent state in the process is evicted or bounded).

For each backend, one database grows through the levels. At each level N:
1. a server creates agents until N exist (concurrently, through the API), and is stopped;
2. a fresh server is started on that database and left alone for --settle seconds: its RSS then is "idle"
   (N agents exist, no traffic has touched them in this process);
3. one message to each of K agents picked at random (--sample, concurrency --concurrency): peak RSS during,
   RSS after;
4. one message to every one of the N agents: peak RSS during, RSS after.
RSS is that of the server's process tree, sampled every 50 ms from /proc. The LLM is recalld's scripted one at
0 ms. Run from the repository root:

    .venv/bin/python bench/memory_per_agent.py                                  # both backends, 10/1000/10000
    .venv/bin/python bench/memory_per_agent.py --backends sqlite --levels 10,1000

PostgreSQL: a database is created and dropped through `psql` on --pg-admin (default
postgresql://postgres@127.0.0.1:5432/postgres, or $RECALLD_TEST_PG_ADMIN); the backend is skipped, with a
note, when that fails. Outputs: bench/out/memory-<timestamp>/ (results.json, results.md, server logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from recalld.bench.procstat import ProcessSampler
from recalld.bench.spawn import RecalldProcess, ScriptedLLMProcess

MB = 2**20
AGENT_BODY = {
    "model": "openai/gpt-4o-mini",
    "embedding": "openai/text-embedding-3-small",
    "memory_blocks": [
        {"label": "human", "value": "The user is measuring memory."},
        {"label": "persona", "value": "I am a terse assistant that answers in one line."},
    ],
}


def psql(admin_uri: str, sql: str) -> None:
    subprocess.run(["psql", admin_uri, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


async def _many(url: str, concurrency: int, jobs: list, make_request) -> int:
    """Run make_request(http, job) for every job with `concurrency` workers; returns how many failed."""
    queue = iter(jobs)
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def worker() -> None:
            nonlocal failures
            for job in queue:
                try:
                    response = await make_request(http, job)
                    if response.status_code >= 300:
                        failures += 1
                except httpx.HTTPError:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def create_agents(url: str, names: list[str], concurrency: int) -> list[str]:
    ids: list[str] = []

    async def create(http: httpx.AsyncClient, name: str) -> httpx.Response:
        response = await http.post("/v1/agents/", json={**AGENT_BODY, "name": name})
        if response.status_code < 300:
            ids.append(response.json()["id"])
        return response

    await _many(url, concurrency, names, create)
    return ids


async def send_to(url: str, agent_ids: list[str], concurrency: int) -> int:
    async def send(http: httpx.AsyncClient, agent_id: str) -> httpx.Response:
        body = {"messages": [{"role": "user", "content": "hello, how much memory do you take?"}]}
        return await http.post(f"/v1/agents/{agent_id}/messages", json=body)

    return await _many(url, concurrency, agent_ids, send)


def start_server(out_dir: Path, name: str, data_dir: Path, pg_uri: str | None, llm: ScriptedLLMProcess):
    # RECALLD_DIR in extra_env overrides the throwaway directory RecalldProcess makes: the SQLite file (when
    # there is one) must outlive each server so the next one finds the agents.
    server = RecalldProcess(
        out_dir / f"{name}.log",
        pg_uri=pg_uri,
        openai_base_url=llm.base_url,
        extra_env={"RECALLD_DIR": str(data_dir), "RECALLD_METRICS": "true"},
    )
    return server.start()


def timed_traffic(server: RecalldProcess, coro) -> dict[str, float]:
    """Run the traffic coroutine while sampling the server's RSS: peak during, RSS after, seconds taken."""
    sampler = ProcessSampler(server.pid, 0.05).start()
    began = sampler.begin()
    started = time.monotonic()
    failures = asyncio.run(coro)
    seconds = time.monotonic() - started
    figures = sampler.end(began) or {}
    sampler.stop()
    time.sleep(0.5)
    after = ProcessSampler(server.pid).snapshot()
    return {
        "peak_rss_mb": round(figures.get("peak_rss_bytes", 0) / MB, 1),
        "rss_after_mb": round(after.rss_bytes / MB, 1) if after else None,
        "seconds": round(seconds, 1),
        "failures": failures,
    }


def idle_rss_mb(server: RecalldProcess, settle_s: float) -> float:
    """The lowest RSS over a second, after settle_s seconds of no traffic."""
    time.sleep(settle_s)
    sampler = ProcessSampler(server.pid)
    readings = []
    for _ in range(10):
        snap = sampler.snapshot()
        if snap is not None:
            readings.append(snap.rss_bytes)
        time.sleep(0.1)
    return round(min(readings) / MB, 1)


def run_backend(args: argparse.Namespace, backend: str, out_dir: Path) -> list[dict]:
    pg_uri = None
    data_dir = Path(tempfile.mkdtemp(prefix=f"recalld-memory-{backend}-"))
    if backend == "postgres":
        name = f"recalld_memory_{uuid.uuid4().hex[:10]}"
        psql(args.pg_admin, f'CREATE DATABASE "{name}"')
        pg_uri = args.pg_admin.rsplit("/", 1)[0] + f"/{name}"
    llm = ScriptedLLMProcess(0.0).start()
    rows: list[dict] = []
    agent_ids: list[str] = []
    rng = random.Random(6)
    try:
        for level in args.levels:
            server = start_server(out_dir, f"{backend}-{level}-create", data_dir, pg_uri, llm)
            try:
                started = time.monotonic()
                names = [f"mem-{i}" for i in range(len(agent_ids), level)]
                agent_ids += asyncio.run(create_agents(server.url, names, args.concurrency))
                create_s = time.monotonic() - started
                after_create = ProcessSampler(server.pid).snapshot()
            finally:
                server.stop()
            print(f"{backend}: {len(agent_ids)} agents exist (created {len(names)} in {create_s:.0f} s)", flush=True)
            server = start_server(out_dir, f"{backend}-{level}", data_dir, pg_uri, llm)
            try:
                idle = idle_rss_mb(server, args.settle)
                sample = rng.sample(agent_ids, min(args.sample, len(agent_ids)))
                on_sample = timed_traffic(server, send_to(server.url, sample, args.concurrency))
                on_all = timed_traffic(server, send_to(server.url, agent_ids, args.concurrency))
                idle_after = idle_rss_mb(server, args.settle)
            finally:
                server.stop()
            row = {
                "backend": backend,
                "agents": len(agent_ids),
                "idle_rss_mb": idle,
                "sample": len(sample),
                "sample_peak_rss_mb": on_sample["peak_rss_mb"],
                "sample_rss_after_mb": on_sample["rss_after_mb"],
                "all_peak_rss_mb": on_all["peak_rss_mb"],
                "all_rss_after_mb": on_all["rss_after_mb"],
                "idle_after_all_mb": idle_after,
                "all_seconds": on_all["seconds"],
                "send_failures": on_sample["failures"] + on_all["failures"],
                "creating_server_rss_mb": round(after_create.rss_bytes / MB, 1) if after_create else None,
                "create_seconds": round(create_s, 1),
            }
            rows.append(row)
            print(f"  {json.dumps(row)}", flush=True)
    finally:
        llm.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if pg_uri:
            psql(args.pg_admin, f'DROP DATABASE IF EXISTS "{pg_uri.rsplit("/", 1)[1]}" WITH (FORCE)')
    return rows


def markdown(rows: list[dict], concurrency: int) -> str:
    lines = [
        f"| backend | agents | idle RSS MB | K | peak RSS MB, 1 msg to K agents | peak RSS MB, 1 msg to every agent "
        f"(C={concurrency}) | RSS MB after | idle RSS MB after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['agents']:,} | {r['idle_rss_mb']:.1f} | {r['sample']} | "
            f"{r['sample_peak_rss_mb']:.1f} | {r['all_peak_rss_mb']:.1f} | {r['all_rss_after_mb']:.1f} | "
            f"{r['idle_after_all_mb']:.1f} |"
        )
    by_backend: dict[str, list[dict]] = {}
    for r in rows:
        by_backend.setdefault(r["backend"], []).append(r)
    for backend, group in by_backend.items():
        if len(group) >= 2:
            first, last = group[0], group[-1]
            extra = last["agents"] - first["agents"]
            per_agent = (last["idle_rss_mb"] - first["idle_rss_mb"]) * MB / extra
            lines.append(
                f"\n{backend}: idle RSS changes by {per_agent:+.0f} bytes per existing agent "
                f"({first['agents']:,} → {last['agents']:,} agents)."
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--levels", default="10,1000,10000", help="agents that exist at each step (ascending)")
    parser.add_argument("--sample", type=int, default=100, help="K: agents sent one message each (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of no traffic before an idle reading")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("RECALLD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--out", default=None, help="default bench/out/memory-<timestamp>")
    args = parser.parse_args()
    args.levels = sorted(int(v) for v in args.levels.split(","))
    out_dir = Path(args.out or f"bench/out/memory-{datetime.now():%Y%m%d-%H%M%S}")
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    notes: list[str] = []
    for backend in args.backends.split(","):
        try:
            rows += run_backend(args, backend, out_dir)
        except subprocess.CalledProcessError as e:
            notes.append(f"{backend}: skipped, psql failed: {(e.stderr or b'').decode(errors='replace').strip()}")
            print(notes[-1], flush=True)
    table = markdown(rows, args.concurrency)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    config = {k: v for k, v in vars(args).items() if k != "pg_admin"}
    (out_dir / "results.json").write_text(
        json.dumps({"config": config, "rows": rows, "notes": notes, "load_average_end": load}, indent=2) + "\n"
    )
    (out_dir / "results.md").write_text(table + "\n")
    print(f"\n{table}\n\nload average at the end: {load}\nresults: {out_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
