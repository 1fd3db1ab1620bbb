"""`recalld plan`: the sizing arithmetic on a hand-written report, its refusals, and end to end on a real
`recalld bench` report."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recalld.plan import ReportError, Target, make_plan, measure
from tests.test_bench import _clean_env


def _phase(name: str, concurrency: int, *, ops_per_s: float, p50: float, cpu_ms: float, db_ms: float | None = None,
           checked_out_max: float | None = None, rss_mb: float = 300) -> dict:
    phase, _, _ = name.partition("@")
    return {
        "name": name, "phase": phase, "concurrency": concurrency, "count": 500, "ok": 500, "errors": {},
        "duration_s": 500 / ops_per_s, "ops_per_s": ops_per_s,
        "latency_ms": {"min": 1.0, "mean": p50, "p50": p50, "p95": 2 * p50, "p99": 3 * p50, "max": 4 * p50},
        "server": {"cpu_s": cpu_ms / 2, "cpu_ms_per_op": cpu_ms, "peak_rss_bytes": int(rss_mb * 2**20),
                   "rss_end_bytes": int(rss_mb * 2**20)},
        "database": None if db_ms is None else {"cpu_s": db_ms / 2, "cpu_ms_per_op": db_ms, "backends": 6},
        "pool": None if checked_out_max is None else {"samples": 3, "checked_out_max": checked_out_max, "size": 25},
    }  # fmt: skip


REPORT = {
    "report_version": 1,
    "server": {"backend": "postgres", "spawned": True},
    "llm": {"fake": True, "latency_ms": 0.0},
    "phases": [
        _phase("create@c10", 10, ops_per_s=100, p50=50, cpu_ms=9),
        _phase("send@c4", 4, ops_per_s=150, p50=20, cpu_ms=5, db_ms=1.5, checked_out_max=2),
        _phase("send@c32", 32, ops_per_s=160, p50=180, cpu_ms=6, db_ms=2, checked_out_max=4, rss_mb=320),
    ],
}
TARGET = Target(agents=10_000, messages_per_s=300, llm_latency_ms=1000)


def _steps(plan) -> dict:
    return {s.name: s for s in plan.steps}


def test_measure_cites_the_phase_of_every_figure():
    m = measure(REPORT, "r.json")
    assert m.cpu_ms.value == 6 and "send@c32" in m.cpu_ms.source  # the costlier send phase
    assert m.server_ms.value == 20 and "send@c4" in m.server_ms.source  # p50 at the lowest concurrency
    assert m.ops_per_s.value == 160 and "send@c32" in m.ops_per_s.source
    assert m.db_cpu_ms.value == 2 and m.peak_rss_mb.value == pytest.approx(320)
    assert m.pool_checked_out.value == 4 and m.pool_rate == 160 and m.concurrency_max == 32


def test_instances_come_from_cpu_and_measured_throughput():
    plan = make_plan(measure(REPORT), TARGET)
    steps = _steps(plan)
    # 1000 x 1 core / 6 ms = 166.7 msg/s; measured 160; planned at 0.7 x min(166.7, 160) = 112 msg/s.
    assert steps["cpu_capacity_per_instance_msgs_per_s"].value == pytest.approx(166.7)
    assert steps["planned_msgs_per_s_per_instance"].value == pytest.approx(112.0)
    # Little's law: 300 x (1000 + 20) / 1000 = 306 turns in flight, ceil(306 / 256) = 2 instances for them.
    assert steps["turns_in_flight"].value == pytest.approx(306.0)
    assert plan.value("instances") == 3  # ceil(300 / 112)
    assert steps["instances"].arithmetic.endswith("= max(1, 3, 2) = 3")
    assert plan.value("workers_per_instance") == 1


def test_pool_and_connections_follow_the_replicas_bound():
    plan = make_plan(measure(REPORT), TARGET)
    # 100 msg/s per instance: Little 100 x 20 ms = 2.0, measured 4 at 160 msg/s scaled = 2.5 -> 2.5 busy.
    assert plan.value("db_connections_busy_per_instance") == pytest.approx(2.5)
    assert plan.value("pool_size") == 5 and plan.value("max_overflow") == 2
    assert plan.value("hpa_min_replicas") == 3 and plan.value("hpa_max_replicas") == 6
    assert plan.value("pg_max_connections") == 6 * (5 + 2) + 10
    bouncer = plan.value("pgbouncer")
    assert not bouncer["recommended"]
    # 2.5 connections at 100 msg/s hold one for 25 ms per message: ceil(2 x 300 x 2 x 25 / 1000).
    assert bouncer["default_pool_size"] == 30
    assert bouncer["max_client_conn"] == 6 * 256 + 10
    assert bouncer["recalld_env"] == {"RECALLD_DISABLE_POOLING": "true"}
    assert plan.value("redis") == "required"
    assert plan.value("hpa_target_turns_queued_per_pod") == 114  # floor(112 x 1020 / 1000)
    assert plan.value("postgres_cores_busy") == pytest.approx(0.6)  # 300 x 2 ms


def test_a_given_pool_size_is_kept_and_warned_about_when_too_small():
    plan = make_plan(measure(REPORT), Target(10_000, 300, 1000, pool_size=2))
    assert plan.value("pool_size") == 2 and plan.value("max_overflow") == 1
    assert any("--pool-size 2 is below" in n for n in plan.notes)


def test_a_large_target_puts_pgbouncer_in_front():
    plan = make_plan(measure(REPORT), Target(100_000, 3000, 1000))
    assert plan.value("instances") == 27  # ceil(3000 / 112)
    assert plan.value("pg_max_connections") > 200 and plan.value("pgbouncer")["recommended"]


def test_one_instance_makes_redis_optional():
    plan = make_plan(measure(REPORT), Target(10, 1, 500))
    assert plan.value("instances") == 1 and plan.value("redis") == "optional"
    assert plan.value("hpa_min_replicas") == 1 and plan.value("hpa_max_replicas") == 2
    assert any("one instance carries the target" in n for n in plan.notes)


def test_too_few_agents_for_the_rate_is_noted():
    plan = make_plan(measure(REPORT), Target(agents=10, messages_per_s=300, llm_latency_ms=1000))
    assert any("10 agents run at most 9.8 turns/s" in n for n in plan.notes)


def test_every_step_shows_formula_arithmetic_and_sources():
    plan = make_plan(measure(REPORT), TARGET)
    for step in plan.steps:
        assert step.formula and step.arithmetic and step.sources, step.name
    cited = " ".join(src for s in plan.steps for src in s.sources)
    assert "phase send@c32, server.cpu_ms_per_op" in cited and "phase send@c4, latency_ms.p50" in cited
    assert json.loads(json.dumps(plan.to_json()))["recommendation"]["instances"] == 3


def test_throughput_with_a_slow_bench_llm_is_not_a_capacity():
    report = copy.deepcopy(REPORT)
    report["llm"]["latency_ms"] = 500.0
    for p in report["phases"]:
        p["latency_ms"]["p50"] += 500
    m = measure(report)
    assert m.ops_per_s is None and m.server_ms.value == pytest.approx(20)
    plan = make_plan(m, TARGET)
    assert plan.value("planned_msgs_per_s_per_instance") == pytest.approx(116.7)  # 0.7 x 1000 / 6


def test_a_report_without_send_is_refused():
    report = {"phases": [REPORT["phases"][0]]}
    with pytest.raises(ReportError, match="no `send` phase"):
        measure(report)
    unmeasured = copy.deepcopy(REPORT)
    for p in unmeasured["phases"]:
        p["server"] = None
    with pytest.raises(ReportError, match="no server CPU figures"):
        measure(unmeasured)


def _plan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recalld", "plan", *args], env=_clean_env(), capture_output=True,
                          text=True, timeout=60)


def test_cli_refuses_a_report_lacking_phases_with_exit_2(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"phases": [REPORT["phases"][0]]}))
    done = _plan_cli("--report", str(path), "--agents", "10", "--messages-per-second", "5", "--llm-latency-ms", "100")
    assert done.returncode == 2 and "no `send` phase" in done.stderr and not done.stdout
    done = _plan_cli("--report", str(tmp_path / "missing.json"), "--agents", "1", "--messages-per-second", "1",
                     "--llm-latency-ms", "1")
    assert done.returncode == 2 and "cannot read the report" in done.stderr


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan-bench")
    argv = [
        sys.executable, "-m", "recalld", "bench", "--spawn-server", "--fake-llm", "--phases", "create,send",
        "--agents", "2", "--messages", "3", "--concurrency", "2", "--sample-interval", "0.05", "--no-plots",
        "--quiet", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "report.json"


def test_plan_from_a_real_bench_report_shows_its_arithmetic(bench_report):
    done = _plan_cli("--report", str(bench_report), "--agents", "1000", "--messages-per-second", "50",
                     "--llm-latency-ms", "800")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for name in ("instances = ", "workers_per_instance = 1", "pool_size = ", "max_overflow = ", "pg_max_connections = ",
                 "pgbouncer = ", "redis = ", "hpa_min_replicas = ", "hpa_max_replicas = ",
                 "hpa_target_turns_queued_per_pod = "):
        assert name in text, name
    assert "phase send@c2, server.cpu_ms_per_op" in text and "Little's law" in text
    assert "measured on SQLite" in text


def test_plan_json_from_a_real_bench_report(bench_report):
    done = _plan_cli("--report", str(bench_report), "--agents", "1000", "--messages-per-second", "50",
                     "--llm-latency-ms", "800", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    report = json.loads(bench_report.read_text())
    send = next(p for p in report["phases"] if p["name"] == "send@c2")
    assert plan["measured"]["cpu_ms"]["value"] == send["server"]["cpu_ms_per_op"]
    rec = plan["recommendation"]
    assert rec["instances"] >= 1 and rec["workers_per_instance"] == 1
    assert rec["pg_max_connections"] == rec["hpa_max_replicas"] * (rec["pool_size"] + rec["max_overflow"]) + 10
    assert all(step["arithmetic"] for step in plan["steps"])
