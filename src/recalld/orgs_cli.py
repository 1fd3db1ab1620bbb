"""`recalld orgs set-limits` and `recalld orgs show`: per-organization limits (contract R22). A change is in
the database at once and reaches running instances within RECALLD_LIMITS_REFRESH_S (2 s by default)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from recalld.settings import Settings

DEFAULT = "default"
# flag -> (limit, parser of its value)
_FLAGS = {
    "--requests-per-s": ("requests_per_s", float),
    "--burst": ("burst", int),
    "--concurrent-turns": ("concurrent_turns", int),
    "--queued-turns": ("queued_turns", int),
    "--max-steps": ("max_steps", int),
    "--max-passages": ("max_passages", int),
    "--max-storage-mb": ("max_storage_mb", int),
    "--max-tool-seconds-per-min": ("max_tool_seconds_per_min", float),
    "--tool-network": ("tool_network", None),
    "--tool-timeout-s": ("tool_timeout_s", float),
    "--tool-memory-mb": ("tool_memory_mb", int),
    "--tool-max-procs": ("tool_max_procs", int),
}


def _value_parser(kind):  # noqa: ANN001, ANN202
    def parse(text: str):  # noqa: ANN202
        if text == DEFAULT:
            return DEFAULT
        if kind is None:
            if text not in ("on", "off"):
                raise argparse.ArgumentTypeError("expected on, off or default")
            return text == "on"
        try:
            return kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a number or 'default', got {text!r}") from e

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="orgs_command", required=True)
    set_limits = sub.add_parser(
        "set-limits",
        help="override limits of one organization ('default' resets one to the RECALLD_LIMIT_* setting)",
    )
    set_limits.add_argument("--org", required=True, help="organization name")
    for flag, (limit, kind) in _FLAGS.items():
        metavar = "on|off|default" if kind is None else "N|default"
        set_limits.add_argument(flag, dest=limit, type=_value_parser(kind), default=None, metavar=metavar)
    set_limits.add_argument("--reset-all", action="store_true", help="reset every limit to its default")
    show = sub.add_parser("show", help="show the limits of every organization (or of one)")
    show.add_argument("--org", default=None, help="organization name")
    show.add_argument("--json", action="store_true", help="print JSON")


def _print(entries: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    for entry in entries:
        print(f"{entry['organization']} ({entry['organization_id']})")
        for name, value in entry["limits"].items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            source = "set" if name in entry["overridden"] else "default"
            print(f"  {name:<26} {value:<12} {source}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.errors import RecalldError
    from recalld.services.limits import LIMIT_NAMES, LimitBook
    from recalld.services.orgs import OrgService
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter

    async def main() -> int:
        router = StoreRouter(settings)
        try:
            await upgrade_to_head(router.primary)
            await OrgService(router).bootstrap()
            book = LimitBook(router, settings)
            if args.orgs_command == "show":
                _print(await book.show(args.org), args.json)
                return 0
            values = {name: None for name in LIMIT_NAMES} if args.reset_all else {}
            for name in LIMIT_NAMES:
                given = getattr(args, name)
                if given is not None:
                    values[name] = None if given == DEFAULT else given
            if not values:
                print("error: name at least one limit to set (see --help)", file=sys.stderr)
                return 2
            _print([await book.set_limits(args.org, values)], False)
            return 0
        except RecalldError as e:
            print(f"error: {e.detail}", file=sys.stderr)
            return 1
        finally:
            await router.dispose()

    return asyncio.run(main())
