"""`recalld bench`: end to end on a tiny workload against a server it spawns, plus its parsing and statistics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from recalld.bench.phases import ArchivalInsertPhase, BenchContext
from recalld.bench.prom import PoolWatcher, parse_prometheus
from recalld.bench.recorder import Recorder, percentile
from tests.servers import create_pg_database, drop_pg_database


def _clean_env() -> dict[str, str]:
    # Nothing of the developer's own recalld/Letta/provider settings may steer the spawned server.
    prefixes = ("RECALLD_", "LETTA_", "OPENAI_", "ANTHROPIC_", "OLLAMA_", "VLLM_", "OTEL_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    argv = [
        sys.executable, "-m", "recalld", "bench", "--spawn-server", "--fake-llm",
        "--agents", "3", "--messages", "3", "--concurrency", "2", "--count", "12",
        "--history-length", "16", "--page-size", "5", "--sample-interval", "0.05", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "report.json").read_text())


def test_bench_reports_every_phase_with_matching_counts(bench_run):
    _, report = bench_run
    phases = {p["name"]: p for p in report["phases"]}
    assert list(phases) == [
        "create@c2", "send@c2", "contention@c2", "archival-insert@c2", "archival-search@c2", "history@c2",
        "retrieve@c2",
    ]  # fmt: skip
    expected = {"create": 3, "send": 9, "contention": 9}
    for p in phases.values():
        assert "skipped" not in p, p
        assert p["count"] == expected.get(p["phase"], 12), p["name"]
        assert p["ok"] == p["count"] and p["errors"] == {}, (p["name"], p["errors"])
        lat = p["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 30_000
        assert p["ops_per_s"] > 0 and p["duration_s"] > 0
        assert sum(p["timeline"]["ops_per_s"]) * p["timeline"]["bin_s"] == pytest.approx(p["count"])
        assert max(p["timeline"]["in_flight_max"]) <= 2
    assert phases["archival-search@c2"]["checks"] == {"exact_text_not_first": 0}


def test_bench_measures_the_spawned_server(bench_run):
    _, report = bench_run
    assert report["server"]["spawned"] and report["server"]["health"]["status"] == "ok"
    assert report["config"]["model"] == "openai/gpt-4o-mini"
    for p in report["phases"]:
        server = p["server"]
        assert server["cpu_s"] >= 0 and server["peak_rss_bytes"] > 20 * 2**20, p["name"]
        assert server["cpu_ms_per_op"] == pytest.approx(server["cpu_s"] * 1000 / p["count"], abs=1e-3)
    # Ten sends plus everything else cannot cost the server nothing (CPU time is read in 10 ms ticks).
    assert sum(p["server"]["cpu_s"] for p in report["phases"]) > 0
    # recalld has no /metrics yet, or has one: either way the report says which.
    assert report["server"]["metrics"] == "present" or report["server"]["metrics"].startswith("absent")


def test_bench_writes_plots_and_raw_operations(bench_run):
    out, report = bench_run
    for name in ("latency_cdf.png", "throughput.png", "in_flight.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "ops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(p["count"] for p in report["phases"])


def test_bench_on_postgres_measures_the_database_backends(tmp_path):
    pg_uri = create_pg_database()
    try:
        argv = [
            sys.executable, "-m", "recalld", "bench", "--spawn-server", "--fake-llm", "--backend", "postgres",
            "--pg-uri", pg_uri, "--phases", "create,send", "--agents", "2", "--messages", "4", "--concurrency", "2",
            "--no-plots", "--out", str(tmp_path),
        ]  # fmt: skip
        # PostgreSQL without RECALLD_SECRETS_KEY: the spawned server gets the key of RECALLD_DIR.
        env = {**_clean_env(), "RECALLD_DIR": str(tmp_path / "home")}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    finally:
        drop_pg_database(pg_uri)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    send = next(p for p in report["phases"] if p["phase"] == "send")
    assert send["count"] == send["ok"] == 8 and send["errors"] == {}
    assert send["database"]["backends"] >= 1 and send["database"]["cpu_s"] >= 0
    assert send["server"]["cpu_s"] > 0


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0


def test_timeline_counts_completions_and_peak_in_flight():
    rec = Recorder()
    for start, end in [(0.0, 0.4), (0.1, 0.3), (0.2, 1.5), (1.1, 1.2)]:
        rec.add(start, end, 200)
    line = rec.timeline(0.0, 2.0, 1.0)
    assert line["ops_per_s"] == [2.0, 2.0]
    assert line["in_flight_max"] == [3, 2]


def test_prometheus_reader_sums_label_sets_and_skips_noise():
    text = (
        "# HELP recalld_db_pool_checked_out Connections lent out\n"
        "# TYPE recalld_db_pool_checked_out gauge\n"
        'recalld_db_pool_checked_out{engine="primary"} 3\n'
        'recalld_db_pool_checked_out{engine="replica",shard="1"} 2.0 1700000000000\n'
        "recalld_db_pool_size 25\n"
        "garbage line\n"
        "other_metric NaN\n"
    )
    assert parse_prometheus(text) == {"recalld_db_pool_checked_out": 5.0, "recalld_db_pool_size": 25.0}


async def test_pool_watcher_is_absent_without_the_gauges():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="http_requests_total 4\n")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://s") as http:
        watcher = PoolWatcher(http)
        assert not await watcher.probe()
        assert watcher.state == "absent: /metrics has no recalld_db_pool_checked_out"


async def test_archival_phase_is_skipped_when_the_route_is_missing():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    ctx = BenchContext("t", "openai/m", None, 1, 1, None, 0, 10, agent_ids=["agent-1"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://s") as http:
        note = await ArchivalInsertPhase().prepare(ctx, http)
    assert note is not None and note.startswith("POST /v1/agents/{id}/archival-memory answered 404")
