"""The `recalld` command: parses arguments and delegates."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from recalld import __version__
from recalld.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    import uvicorn

    from recalld.api.app import create_app

    app = create_app(settings)

    class DrainingServer(uvicorn.Server):
        """SIGTERM: readiness turns 503 at once while requests are still served for drain_grace_s, so the
        balancer stops sending work; then uvicorn stops accepting and finishes what is in flight."""

        draining = False

        def handle_exit(self, sig, frame):  # noqa: ANN001
            if self.draining or settings.drain_grace_s <= 0:
                return super().handle_exit(sig, frame)
            self.draining = True
            app.state.readiness = "draining"
            timer = threading.Timer(settings.drain_grace_s, super().handle_exit, args=(sig, frame))
            timer.daemon = True
            timer.start()

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        # Longer than a balancer's idle upstream timeout, so the balancer closes idle connections first.
        timeout_keep_alive=75,
    )
    DrainingServer(config).run()
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter

    async def run() -> None:
        router = StoreRouter(settings)
        try:
            await upgrade_to_head(router.primary)
        finally:
            await router.dispose()

    asyncio.run(run())
    print("database is at the newest schema")
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.errors import RecalldError
    from recalld.services.orgs import OrgService
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter

    async def run() -> int:
        router = StoreRouter(settings)
        try:
            await upgrade_to_head(router.primary)
            orgs = OrgService(router)
            await orgs.bootstrap()
            if args.keys_command == "create":
                key = await orgs.create_key(args.org, args.user, args.name)
                print(
                    f"organization: {key.org_id}\nuser: {key.user_id}\nkey id: {key.key_id}", file=sys.stderr
                )
                print(key.key)
            else:
                await orgs.revoke_key(args.org, args.key_id)
                print(f"revoked {args.key_id}", file=sys.stderr)
            return 0
        except RecalldError as e:
            print(f"error: {e.detail}", file=sys.stderr)
            return 1
        finally:
            await router.dispose()

    return asyncio.run(run())


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.bench import run

    return run(args)


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.cluster import run

    return run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recalld", description="A Letta-compatible server for stateful agents."
    )
    parser.add_argument("--version", action="version", version=f"recalld {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP API (applies pending migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8283)
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-* headers are trusted (comma-separated, or *)",
    )
    serve.set_defaults(handler=_serve)

    migrate = sub.add_parser("migrate", help="apply the database schema")
    migrate.set_defaults(handler=_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="create a key (and the organization when new); prints it once"
    )
    create.add_argument("--org", required=True, help="organization name")
    create.add_argument("--user", default=None, help="user name within the organization")
    create.add_argument("--name", default=None, help="a label for the key")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("--org", required=True)
    revoke.add_argument("key_id")
    keys.set_defaults(handler=_keys)

    from recalld.bench.options import add_arguments as add_bench_arguments

    bench = sub.add_parser(
        "bench", help="measure a Letta-compatible server (or one it starts) and write a report with plots"
    )
    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)

    from recalld.cluster import add_arguments as add_cluster_arguments

    cluster = sub.add_parser(
        "cluster", help="start N instances on loopback ports behind a private nginx (development and tests)"
    )
    add_cluster_arguments(cluster)
    cluster.set_defaults(handler=_cluster)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args.handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
