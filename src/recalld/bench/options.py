"""Command-line options of `recalld bench` (argparse only, so `recalld --help` stays cheap)."""

from __future__ import annotations

import argparse

PHASES = ("create", "send", "contention", "archival-insert", "archival-search", "history", "retrieve")
DEFAULT_PHASES = PHASES


def _phase_list(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(PHASES)
    unknown = [p for p in names if p not in PHASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(unknown) or '(none)'}; choose from {PHASES}")
    # Run order is fixed (later phases use what earlier ones made), whatever order they were named in.
    return [p for p in PHASES if p in names]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("concurrency values must be positive integers")
    return values


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `recalld bench` on `parser`."""
    target = parser.add_argument_group("target")
    target.add_argument("--url", help="base URL of a server speaking the Letta API (or use --spawn-server)")
    target.add_argument("--api-key", default=None, help="sent as `Authorization: Bearer <key>`")
    target.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="PID of the server (on this machine): its CPU time and RSS are measured per phase",
    )
    target.add_argument(
        "--spawn-server",
        action="store_true",
        help="start `recalld serve` on a free port for the run and measure its CPU and RSS",
    )
    target.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite", help="with --spawn-server")
    target.add_argument(
        "--pg-uri",
        default=None,
        help="PostgreSQL URI: the spawned server's database (--backend postgres), or the database of the server "
        "at --url; either way its backends' CPU is measured when PostgreSQL runs on this machine",
    )
    target.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the spawned server (repeatable), e.g. RECALLD_PG_POOL_SIZE=10",
    )
    target.add_argument(
        "--fake-llm",
        action="store_true",
        help="run the scripted OpenAI-compatible LLM (no API key needed); a spawned server is pointed at it",
    )
    target.add_argument("--llm-latency-ms", type=float, default=0.0, help="delay of every scripted LLM reply")
    target.add_argument("--llm-port", type=int, default=0, help="port of the scripted LLM (default: a free one)")

    work = parser.add_argument_group("workload")
    work.add_argument(
        "--phases",
        type=_phase_list,
        default=list(DEFAULT_PHASES),
        help=f"comma-separated phases, run in this order whatever the order given: {','.join(PHASES)} (or all)",
    )
    work.add_argument(
        "--concurrency",
        type=_int_list,
        default=[4, 32],
        help="requests in flight; a list such as 4,32 runs every phase but create once per value (default 4,32)",
    )
    work.add_argument("--agents", type=_positive_int, default=10, help="agents created and used (default 10)")
    work.add_argument(
        "--messages",
        type=_positive_int,
        default=20,
        help="messages per agent in `send` (agents x N turns); `contention` sends as many to one agent (default 20)",
    )
    work.add_argument(
        "--count",
        type=_positive_int,
        default=None,
        help="operations per phase (default: 200 for archival-insert/-search, retrieve and history pages; "
        "when given it also bounds send and contention)",
    )
    work.add_argument(
        "--otid",
        action="store_true",
        help="give every sent user message an otid, as SDK users are told to for safe retries (contract R9)",
    )
    work.add_argument("--duration", type=float, default=None, help="stop issuing operations in a phase after S seconds")
    work.add_argument("--warmup", type=int, default=0, help="untimed operations before each phase (default 0)")
    work.add_argument("--history-length", type=int, default=200, help="messages the `history` agent has at least")
    work.add_argument("--page-size", type=_positive_int, default=50, help="page size of the `history` walk")
    work.add_argument("--model", default=None, help="model handle (default: the first …/gpt-4o-mini, else the first)")
    work.add_argument(
        "--embedding",
        default=None,
        help="embedding handle (default: the first …/text-embedding-3-small, else the first listed)",
    )
    work.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    work.add_argument(
        "--keep-agents", action="store_true", help="don't delete the agents at the end (a spawned server's are kept)"
    )

    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="report directory (default bench/out/<timestamp>)")
    out.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    out.add_argument("--sample-interval", type=float, default=0.1, help="seconds between CPU/RSS samples")
    out.add_argument("--quiet", action="store_true", help="no progress output")
