"""The `recalld` command: parses arguments and delegates."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from recalld import __version__
from recalld.obs.logs import configure as configure_logging
from recalld.obs.logs import logging_config
from recalld.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading
    import time

    import uvicorn

    from recalld.api.app import create_app
    from recalld.api.http_protocol import JSONErrorHttpToolsProtocol
    from recalld.exposure import unauthenticated_refusal
    from recalld.secrets_box import SecretsKeyError, keys_from_settings

    host = args.host or settings.listen_host
    # Before anything listens: an exposed unauthenticated server, or secrets with no key the cluster can share.
    refusal = unauthenticated_refusal(host, settings)
    if refusal:
        print(f"recalld serve: {refusal}", file=sys.stderr)
        return 2
    try:
        keys_from_settings(settings)
    except SecretsKeyError as e:
        print(f"recalld serve: {e}", file=sys.stderr)
        return 2
    if settings.auth == "off":
        logging.getLogger("recalld").warning(
            "authentication is off (RECALLD_AUTH=off): every request without a recalld key acts as the default "
            "organization; set RECALLD_AUTH=required before anyone else can reach %s",
            host,
        )
    app = create_app(settings)

    class DrainingServer(uvicorn.Server):
        """SIGTERM: readiness turns 503 at once while requests are still served for drain_grace_s, so the
        balancer stops sending work; then uvicorn stops accepting and finishes what is in flight."""

        draining = False

        def handle_exit(self, sig, frame):  # noqa: ANN001
            if self.draining or settings.drain_grace_s <= 0:
                return self._stop(sig)
            self.draining = True
            app.state.readiness = "draining"
            timer = threading.Timer(settings.drain_grace_s, self._stop, args=(sig,))
            timer.daemon = True
            timer.start()

        def _stop(self, sig: int) -> None:
            # uvicorn's own handle_exit, minus re-raising the signal once shut down: a drained instance
            # exits 0, not killed by SIGTERM. A second Ctrl-C still forces the exit.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True
                # One drain deadline for requests (uvicorn) and background turns (the app's lifespan).
                if getattr(app.state, "drain_deadline", None) is None:
                    app.state.drain_deadline = time.monotonic() + settings.drain_timeout_s

    config = uvicorn.Config(
        app,
        http=JSONErrorHttpToolsProtocol,
        host=host,
        port=args.port or settings.listen_port,
        log_level=settings.log_level,
        # uvicorn's access and error lines through recalld's formatter (JSON unless RECALLD_LOG_FORMAT=text).
        log_config=logging_config(settings.log_format or "json", settings.log_level),
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips or settings.forwarded_allow_ips,
        # A float: int() would turn a sub-second timeout into 0, which uvicorn reads as "wait forever".
        timeout_graceful_shutdown=settings.drain_timeout_s,
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
                await _announce_revocation(settings, args.key_id)
            return 0
        except RecalldError as e:
            print(f"error: {e.detail}", file=sys.stderr)
            return 1
        finally:
            await router.dispose()

    return asyncio.run(run())


async def _announce_revocation(settings: Settings, key_id: str) -> None:
    """With Redis, every instance drops its key cache now; without, the key expires from caches within the TTL."""
    if not settings.redis_url:
        print(f"instances stop accepting it within RECALLD_KEY_CACHE_TTL_S ({settings.key_cache_ttl_s:g} s)",
              file=sys.stderr)
        return
    from recalld.coord.revocations import announce

    try:
        listening = await announce(settings.redis_url, key_id)
        print(f"announced to {listening} instance(s) through Redis", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - the revocation is stored; only the push failed
        print(f"warning: could not announce through Redis ({type(e).__name__}); instances stop accepting the key "
              f"within RECALLD_KEY_CACHE_TTL_S ({settings.key_cache_ttl_s:g} s)", file=sys.stderr)


def _secrets(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.secrets_box import SecretsBox, SecretsKeyError, generate_key

    if args.secrets_command == "generate-key":
        print(generate_key())
        return 0

    from recalld.services.secrets import rotate_secrets
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter

    async def run() -> int:
        router = StoreRouter(settings)
        try:
            await upgrade_to_head(router.primary)
            agents, variables = await rotate_secrets(router, SecretsBox.from_settings(settings))
            print(f"re-encrypted the secrets of {agents} agent(s) and {variables} sandbox environment variable(s) "
                  "with the first key of RECALLD_SECRETS_KEY", file=sys.stderr)
            return 0
        except SecretsKeyError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        finally:
            await router.dispose()

    return asyncio.run(run())


def _orgs(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.orgs_cli import run

    return run(args, settings)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.bench import run

    return run(args)


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.cluster import run

    return run(args, settings)


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    from recalld.plan import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recalld", description="A Letta-compatible server for stateful agents."
    )
    parser.add_argument("--version", action="version", version=f"recalld {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP API (applies pending migrations first)")
    serve.add_argument("--host", default=None, help="address to listen on (default RECALLD_LISTEN_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default RECALLD_LISTEN_PORT or 8283)")
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-* headers are trusted (comma-separated, or *; default "
        "RECALLD_FORWARDED_ALLOW_IPS or 127.0.0.1)",
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

    secrets = sub.add_parser("secrets", help="the key that encrypts agent secrets at rest (RECALLD_SECRETS_KEY)")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    secrets_sub.add_parser("generate-key", help="print a new random key for RECALLD_SECRETS_KEY")
    secrets_sub.add_parser(
        "rotate",
        help="re-encrypt every stored secret with the first key of RECALLD_SECRETS_KEY (the others must still "
        "open what they wrote); plain-text rows of earlier versions are encrypted too",
    )
    secrets.set_defaults(handler=_secrets)

    from recalld.orgs_cli import add_arguments as add_orgs_arguments

    orgs = sub.add_parser("orgs", help="show and set organizations' limits (requests, turns, storage, tools)")
    add_orgs_arguments(orgs)
    orgs.set_defaults(handler=_orgs)

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

    from recalld.plan import add_arguments as add_plan_arguments

    plan = sub.add_parser(
        "plan", help="size a deployment (instances, pools, PostgreSQL, Redis, HPA) from a bench report"
    )
    add_plan_arguments(plan)
    plan.set_defaults(handler=_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_format or ("json" if args.command == "serve" else "text"), settings.log_level)
    return args.handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
