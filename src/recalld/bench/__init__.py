"""`recalld bench`: a workload against any server that speaks the Letta API, with a JSON report and plots.

Modules: `options` (the command line), `phases` (what each phase sends), `recorder` (latencies),
`procstat` (server CPU and RSS from /proc), `prom` (pool gauges from /metrics), `spawn` (the scripted LLM
and a `recalld serve` started by the bench), `report`, `plots`, `progress`, `runner` (the whole run).
"""

from __future__ import annotations

import argparse

from recalld.bench.options import add_arguments


def run(args: argparse.Namespace) -> int:
    """Run `recalld bench` with parsed arguments; returns the exit status."""
    from recalld.bench.runner import run as run_bench

    return run_bench(args)


__all__ = ["add_arguments", "run"]
