#!/usr/bin/env python3
"""What isolating custom tools costs (R23): tool-call latency and server CPU per tool call, with tools in
the bubblewrap sandbox and in the old unisolated subprocess, measured in the same run.

Two servers run side by side on SQLite (RECALLD_TOOL_SANDBOX=bwrap and =unsafe-subprocess), with recalld's
scripted LLM at 0 ms. Each has an agent with one custom tool (adds two numbers and prints a line). One "turn with
a tool" is a send whose model calls the tool once and then answers: two model calls, one tool process. A "turn
without a tool" (the model answers at once) on the same server is the baseline the tool adds to. A run sends
--calls turns of each kind, one at a time, to each server, the two servers' calls interleaved one by one so
both see the same machine; the figures are the medians over --runs runs of each run's p50 and CPU per call. CPU
is that of the server's process tree, tool processes included (they are its children, reaped: cutime/cstime).

    .venv/bin/python bench/tool_sandbox.py                       # 3 runs of 100 calls
    .venv/bin/python bench/tool_sandbox.py --runs 5 --calls 200

Outputs: bench/out/tool-sandbox-<timestamp>/ (results.json, results.md, server logs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from recalld.bench.procstat import ProcessSampler
from recalld.bench.recorder import percentile
from recalld.bench.spawn import RecalldProcess, ScriptedLLMProcess

MODES = ("bwrap", "unsafe-subprocess")
TOOL_NAME = "bench_add"
TOOL_SOURCE = f'''
def {TOOL_NAME}(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    print("adding", a, b)
    return a + b
'''


def tool_python() -> str | None:
    """As root the sandbox runs as an unprivileged uid, which cannot read an interpreter under /root (pyenv)."""
    if os.geteuid() == 0 and sys.base_prefix.startswith("/root") and os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return None


def start_server(mode: str, llm_url: str, out_dir: Path, python: str | None) -> RecalldProcess:
    env = {"RECALLD_TOOL_SANDBOX": mode}
    if python:
        env["RECALLD_TOOL_PYTHON"] = python
    return RecalldProcess(out_dir / f"recalld-{mode}.log", openai_base_url=llm_url, extra_env=env).start()


def prepare(http: httpx.Client) -> str:
    """The agent with the tool; its id."""
    tool = http.put("/v1/tools/", json={"source_code": TOOL_SOURCE})
    tool.raise_for_status()
    agent = http.post("/v1/agents/", json={"model": "openai/gpt-4o-mini", "tool_ids": [tool.json()["id"]]})
    agent.raise_for_status()
    return agent.json()["id"]


def send(http: httpx.Client, agent_id: str, text: str, *, expect_tool: bool) -> float:
    started = time.perf_counter()
    answer = http.post(f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": text}]})
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    returns = [m for m in answer.json()["messages"] if m["message_type"] == "tool_return_message"]
    if expect_tool and (len(returns) != 1 or returns[0]["status"] != "success" or returns[0]["tool_return"] != "5"):
        raise RuntimeError(f"the tool call failed: {returns}")
    return elapsed


def measure(servers: dict[str, RecalldProcess], agents: dict[str, str], calls: int) -> dict[str, dict]:
    """One run: each kind of turn `calls` times per server, the servers' calls interleaved one by one, so a
    change in the machine's load (other processes) hits both alike."""
    samplers = {mode: ProcessSampler(server.pid).start() for mode, server in servers.items()}
    clients = {mode: httpx.Client(base_url=server.url, timeout=60) for mode, server in servers.items()}
    results: dict[str, dict] = {mode: {} for mode in servers}
    try:
        for kind, text, expect in (
            ("with_tool", f'CALL {TOOL_NAME} {{"a": 2, "b": 3}}', True),
            ("without_tool", "hello", False),
        ):
            began = {mode: sampler.begin() for mode, sampler in samplers.items()}
            latencies: dict[str, list[float]] = {mode: [] for mode in servers}
            for _ in range(calls):
                for mode, http in clients.items():
                    latencies[mode].append(send(http, agents[mode], text, expect_tool=expect))
            for mode, sampler in samplers.items():
                usage = sampler.end(began[mode]) or {"cpu_s": float("nan")}
                ordered = sorted(latencies[mode])
                results[mode][kind] = {
                    "p50_ms": round(percentile(ordered, 50) * 1000, 2),
                    "p90_ms": round(percentile(ordered, 90) * 1000, 2),
                    "cpu_ms_per_call": round(usage["cpu_s"] * 1000 / calls, 2),
                }
        return results
    finally:
        for http in clients.values():
            http.close()
        for sampler in samplers.values():
            sampler.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tool-python", default=tool_python(), help="RECALLD_TOOL_PYTHON for both servers")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    out_dir = args.out / f"tool-sandbox-{datetime.now():%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    llm = ScriptedLLMProcess(latency_ms=0).start()
    servers: dict[str, RecalldProcess] = {}
    try:
        agents = {}
        for mode in MODES:
            servers[mode] = start_server(mode, llm.base_url, out_dir, args.tool_python)
            with httpx.Client(base_url=servers[mode].url, timeout=60) as http:
                agents[mode] = prepare(http)
                for _ in range(args.warmup):
                    send(http, agents[mode], f'CALL {TOOL_NAME} {{"a": 2, "b": 3}}', expect_tool=True)
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            measured = measure(servers, agents, args.calls)
            for mode in MODES:
                runs[mode].append(measured[mode])
                print(f"run {run + 1} {mode}: {json.dumps(measured[mode])}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        llm.stop()
    summary = {
        mode: {
            kind: {
                metric: statistics.median(r[kind][metric] for r in runs[mode])
                for metric in ("p50_ms", "p90_ms", "cpu_ms_per_call")
            }
            for kind in ("with_tool", "without_tool")
        }
        for mode in MODES
    }
    added_p50 = summary["bwrap"]["with_tool"]["p50_ms"] - summary["unsafe-subprocess"]["with_tool"]["p50_ms"]
    added_cpu = (
        summary["bwrap"]["with_tool"]["cpu_ms_per_call"] - summary["unsafe-subprocess"]["with_tool"]["cpu_ms_per_call"]
    )
    report = {
        "runs": args.runs,
        "calls": args.calls,
        "cpus": os.cpu_count(),
        "summary": summary,
        "added_by_bwrap": {"p50_ms": round(added_p50, 2), "cpu_ms_per_call": round(added_cpu, 2)},
        "per_run": runs,
    }
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Tool sandbox cost ({args.runs} runs x {args.calls} calls, medians)",
        "",
        "| sandbox | turn with tool p50 ms | p90 ms | CPU ms/call | turn without tool p50 ms | CPU ms/call |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        w, wo = summary[mode]["with_tool"], summary[mode]["without_tool"]
        row = (mode, w["p50_ms"], w["p90_ms"], w["cpu_ms_per_call"], wo["p50_ms"], wo["cpu_ms_per_call"])
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    lines += ["", f"bwrap adds {added_p50:.1f} ms at p50 and {added_cpu:.1f} ms of CPU per tool call."]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
