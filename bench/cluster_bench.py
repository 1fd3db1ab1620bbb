#!/usr/bin/env python3
"""Cluster benchmark: 1 vs 3 recalld instances behind nginx on one PostgreSQL, scripted LLM at 0 ms and
500 ms, concurrency 32 and 256 -- throughput, p50/p95/p99 latency, errors, server CPU and database connections.

For each (instances, LLM latency): a fresh database, a private Redis (leases), the scripted LLM, and
`recalld cluster --instances N` (nginx in front). Then, per concurrency C, one `recalld bench --url <nginx>
--server-pid <cluster> --phases create,send`: C agents (so every worker has an agent of its own and turns
measure the cluster, not one agent's queue), `--messages` turns each, at most `--duration` seconds. While it
runs, `SELECT count(*) FROM pg_stat_activity WHERE datname = <db>` is sampled: the peak is "connections used".
Server CPU is that of the cluster process tree (instances and nginx). Run from the repository root:

    .venv/bin/python bench/cluster_bench.py
    .venv/bin/python bench/cluster_bench.py --instances 3 --latencies 500 --concurrency 256 --duration 10

PostgreSQL: databases are created and dropped through `psql` on --pg-admin (default
postgresql://postgres@127.0.0.1:5432/postgres, or $RECALLD_TEST_PG_ADMIN); it allows 100 connections, so the
instances' pools are --pool-size + --max-overflow each (default 10 + 5: 45 for three instances).
Outputs: bench/out/cluster-<timestamp>/ (one `recalld bench` report per run, and summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import datetime
from pathlib import Path

from recalld.bench.spawn import free_port


def free_port_run(count: int) -> int:
    for _ in range(100):
        base = free_port()
        if base + count < 65000 and all(_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def psql(uri: str, sql: str) -> str:
    return subprocess.run(
        ["psql", uri, "-X", "-v", "ON_ERROR_STOP=1", "-tAqc", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ConnectionSampler(threading.Thread):
    """Peak and mean of the connections open to one database, sampled every `interval_s`."""

    def __init__(self, admin_uri: str, database: str, interval_s: float = 0.2):
        super().__init__(daemon=True)
        self.admin_uri, self.database, self.interval_s = admin_uri, database, interval_s
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{self.database}'"
        while not self._done.is_set():
            try:
                self.samples.append(int(psql(self.admin_uri, query)))
            except (subprocess.CalledProcessError, ValueError):
                pass
            self._done.wait(self.interval_s)

    def finish(self) -> dict[str, float]:
        self._done.set()
        self.join()
        if not self.samples:
            return {"peak": 0, "mean": 0.0}
        return {"peak": max(self.samples), "mean": round(sum(self.samples) / len(self.samples), 1)}


class Setup:
    """A database, a private Redis, the scripted LLM and `recalld cluster` for one (instances, latency)."""

    def __init__(self, args: argparse.Namespace, instances: int, latency_ms: int, out_dir: Path):
        self.args, self.instances, self.latency_ms, self.out_dir = args, instances, latency_ms, out_dir
        self.database = f"recalld_cluster_bench_{uuid.uuid4().hex[:10]}"
        self.db_uri = args.pg_admin.rsplit("/", 1)[0] + f"/{self.database}"
        self.port = free_port()
        self.redis: subprocess.Popen | None = None
        self.llm: subprocess.Popen | None = None
        self.cluster: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="recalld-cluster-bench-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Setup:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        psql(self.args.pg_admin, f'CREATE DATABASE "{self.database}"')
        redis_url = None
        if self.args.redis:
            redis_port = free_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.tmp)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.llm = subprocess.Popen(
            [sys.executable, "-m", "recalld.testing.scripted_llm", "--latency-ms", str(self.latency_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        llm_url = self.llm.stdout.readline().strip()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECALLD_", "LETTA_", "OPENAI_", "ANTHROPIC_", "OLLAMA_", "VLLM_"))
        }
        env.update(
            OPENAI_BASE_URL=llm_url,
            OPENAI_API_KEY="sk-bench",
            RECALLD_DIR=str(self.tmp),
            RECALLD_LOG_LEVEL="warning",
            RECALLD_PG_POOL_SIZE=str(self.args.pool_size),
            RECALLD_PG_MAX_OVERFLOW=str(self.args.max_overflow),
            RECALLD_LEASE_WAIT="120",
            RECALLD_DRAIN_GRACE="0",
        )
        command = [
            sys.executable, "-m", "recalld", "cluster", "--instances", str(self.instances), "--port", str(self.port),
            "--base-port", str(free_port_run(self.instances)), "--pg-uri", self.db_uri,
            "--run-dir", str(self.out_dir / "cluster"), *(["--redis-url", redis_url] if redis_url else []),
        ]  # fmt: skip
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "cluster.err", "wb") as err:
            self.cluster = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        ready = self.cluster.stdout.readline().strip()
        if ready != self.url:
            raise RuntimeError(f"recalld cluster did not start:\n{(self.out_dir / 'cluster.err').read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        stop(self.cluster)
        stop(self.llm)
        stop(self.redis)
        try:
            psql(self.args.pg_admin, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def bench(self, concurrency: int, out_dir: Path) -> dict:
        """One `recalld bench` (create C agents, then send) at concurrency C; the send phase's figures."""
        command = [
            sys.executable, "-m", "recalld", "bench", "--url", self.url, "--server-pid", str(self.cluster.pid),
            # The database too: its CPU is measured, and it is ANALYZEd once the agents exist.
            "--pg-uri", self.db_uri, "--phases", "create,send",
            "--agents", str(concurrency), "--concurrency", str(concurrency),
            "--messages", str(max(1, self.args.turns // concurrency)), "--duration", str(self.args.duration),
            "--warmup", str(min(concurrency, 32)), "--out", str(out_dir), "--no-plots", "--quiet",
        ]  # fmt: skip
        print("$ recalld " + " ".join(command[3:]), flush=True)
        sampler = ConnectionSampler(self.args.pg_admin, self.database)
        sampler.start()
        llm_cpu_before = cpu_seconds(self.llm.pid)
        try:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        finally:
            connections = sampler.finish()
        llm_cpu_s = cpu_seconds(self.llm.pid) - llm_cpu_before
        report = json.loads((out_dir / "report.json").read_text())
        send = next(p for p in report["phases"] if p["phase"] == "send")
        return {
            "instances": self.instances,
            "llm_latency_ms": self.latency_ms,
            "concurrency": concurrency,
            "ops": send["count"],
            "errors": send["errors"],
            "turns_per_s": send["ops_per_s"],
            "p50_ms": send["latency_ms"]["p50"],
            "p95_ms": send["latency_ms"]["p95"],
            "p99_ms": send["latency_ms"]["p99"],
            "server_cpu_ms_per_turn": (send.get("server") or {}).get("cpu_ms_per_op"),
            # How busy the machine was during the send phase (all cores), and what the harness itself cost.
            "machine_cpu_busy_pct": send.get("machine_cpu_busy_pct"),
            "client_cpu_s": send.get("client_cpu_s"),
            "llm_cpu_s_whole_run": round(llm_cpu_s, 2),
            "connections_peak": connections["peak"],
            "connections_mean": connections["mean"],
        }


def table(rows: list[dict]) -> str:
    header = (
        f"{'inst':>4} {'LLM ms':>6} {'C':>4} {'turns':>6} {'errors':>7} {'turns/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'CPU ms/turn':>11} {'conns peak':>10} {'mean':>5} {'busy %':>6}"
    )
    lines = [header]
    for r in rows:
        errors = sum(r["errors"].values())
        cpu = r["server_cpu_ms_per_turn"]
        lines.append(
            f"{r['instances']:>4} {r['llm_latency_ms']:>6} {r['concurrency']:>4} {r['ops']:>6} {errors:>7} "
            f"{r['turns_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{'-' if cpu is None else format(cpu, '.2f'):>11} {r['connections_peak']:>10} {r['connections_mean']:>5} "
            f"{r['machine_cpu_busy_pct'] or 0:>6.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="1,3", help="instance counts (default 1,3)")
    parser.add_argument("--latencies", default="0,500", help="scripted LLM latencies in ms (default 0,500)")
    parser.add_argument("--concurrency", default="32,256", help="concurrent clients (default 32,256)")
    parser.add_argument("--turns", type=int, default=2048, help="turns per run at most (default 2048)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per send phase at most (default 15)")
    parser.add_argument("--pool-size", type=int, default=10, help="RECALLD_PG_POOL_SIZE per instance (default 10)")
    parser.add_argument("--max-overflow", type=int, default=5, help="RECALLD_PG_MAX_OVERFLOW (default 5)")
    parser.add_argument("--no-redis", dest="redis", action="store_false", help="PostgreSQL leases instead of Redis")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("RECALLD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--out", default=None, help="default bench/out/cluster-<timestamp>")
    args = parser.parse_args()
    out_root = Path(args.out or f"bench/out/cluster-{datetime.now():%Y%m%d-%H%M%S}")

    rows = []
    for instances in (int(n) for n in args.instances.split(",")):
        for latency_ms in (int(ms) for ms in args.latencies.split(",")):
            run_dir = out_root / f"i{instances}-llm{latency_ms}"
            with Setup(args, instances, latency_ms, run_dir) as setup:
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    rows.append(setup.bench(concurrency, run_dir / f"c{concurrency}"))
                    print(table(rows[-1:]).splitlines()[1], flush=True)
    out_root.mkdir(parents=True, exist_ok=True)
    config = vars(args) | {"cores": os.cpu_count(), "load_avg": os.getloadavg()}
    (out_root / "summary.json").write_text(json.dumps({"config": config, "results": rows}, indent=2) + "\n")
    print(f"\nsend phase per run (errors by status in summary.json); pools {args.pool_size}+{args.max_overflow}")
    print(table(rows))
    print(f"summary: {out_root / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
