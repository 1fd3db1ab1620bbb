"""The bench report: per-phase figures as JSON, the raw operations as CSV, and a summary table for the terminal."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recalld.bench.recorder import Recorder

REPORT_VERSION = 1


def bin_width(span_s: float, bins: int = 40) -> float:
    """A round bin width giving about `bins` bins over `span_s` seconds."""
    for width in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0):
        if span_s / width <= bins:
            return width
    return 60.0


@dataclass
class PhaseResult:
    """One run of one phase at one concurrency."""

    name: str  # e.g. "send@c4"
    phase: str
    concurrency: int
    recorder: Recorder = field(default_factory=Recorder)
    began_s: float = 0.0
    ended_s: float = 0.0
    skipped: str | None = None
    server: dict[str, Any] | None = None
    llm_cpu_s: float | None = None
    client_cpu_s: float | None = None
    machine_cpu_busy_pct: float | None = None
    other_cpu_s: float | None = None
    pool: dict[str, Any] | None = None
    database: dict[str, Any] | None = None
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.ended_s - self.began_s

    def to_json(self) -> dict[str, Any]:
        if self.skipped:
            return {"name": self.name, "phase": self.phase, "concurrency": self.concurrency, "skipped": self.skipped}
        rec = self.recorder
        duration = max(self.duration_s, 1e-9)
        server = dict(self.server) if self.server else None
        if server is not None:
            server["cpu_ms_per_op"] = round(server["cpu_s"] * 1000 / rec.count, 3) if rec.count else None
        database = dict(self.database) if self.database else None
        if database is not None:
            database["cpu_ms_per_op"] = round(database["cpu_s"] * 1000 / rec.count, 3) if rec.count else None
        bin_s = bin_width(duration)
        return {
            "name": self.name,
            "phase": self.phase,
            "concurrency": self.concurrency,
            "count": rec.count,
            "ok": rec.ok_count,
            "errors": rec.errors(),
            "duration_s": round(self.duration_s, 3),
            "ops_per_s": round(rec.ok_count / duration, 2),
            "latency_ms": rec.latency_summary(),
            "server": server,
            "pool": self.pool,
            "database": database,
            "client_cpu_s": self.client_cpu_s,
            "llm_cpu_s": self.llm_cpu_s,
            "machine_cpu_busy_pct": self.machine_cpu_busy_pct,
            "other_cpu_s": self.other_cpu_s,
            "checks": self.checks,
            "timeline": rec.timeline(self.began_s, self.ended_s, bin_s) | {"bin_s": bin_s},
        }


def write_report(out_dir: Path, header: dict[str, Any], results: list[PhaseResult]) -> Path:
    """report.json (figures) and ops.csv (every operation: phase, start, end, outcome) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"report_version": REPORT_VERSION, **header, "phases": [r.to_json() for r in results]}
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    with open(out_dir / "ops.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phase", "start_s", "end_s", "outcome"])
        for r in results:
            rec = r.recorder
            for start, end, outcome in zip(rec.starts, rec.ends, rec.outcomes, strict=True):
                writer.writerow([r.name, f"{start:.6f}", f"{end:.6f}", outcome])
    return path


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summary_table(report: dict[str, Any]) -> str:
    """The per-phase figures as an aligned text table."""
    rows = [
        (
            "phase",
            "ops",
            "err",
            "ops/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "cpu ms/op",
            "db ms/op",
            "peak RSS MB",
            "pool max",
        )
    ]
    notes = []
    for p in report["phases"]:
        if "skipped" in p:
            notes.append(f"{p['name']}: skipped — {p['skipped']}")
            continue
        lat, server, pool, database = p["latency_ms"], p["server"] or {}, p["pool"] or {}, p["database"] or {}
        rss = server.get("peak_rss_bytes")
        rows.append(
            (
                p["name"],
                str(p["count"]),
                str(p["count"] - p["ok"]),
                _fmt(p["ops_per_s"]),
                _fmt(lat["p50"]),
                _fmt(lat["p95"]),
                _fmt(lat["p99"]),
                _fmt(lat["max"]),
                _fmt(server.get("cpu_ms_per_op"), ".2f"),
                _fmt(database.get("cpu_ms_per_op"), ".2f"),
                _fmt(rss / 2**20 if rss else None),
                _fmt(pool.get("checked_out_max"), ".0f"),
            )
        )
        if p["errors"]:
            notes.append(f"{p['name']}: errors {p['errors']}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    return "\n".join(lines + notes)
