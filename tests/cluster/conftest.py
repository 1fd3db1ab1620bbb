"""Fixtures of the multi-instance tests: a fresh PostgreSQL database per test, N `recalld serve` instances on
it behind a private nginx (deploy/nginx.conf, filled in by recalld.cluster), a private Redis a test may stop,
and a PgBouncer in transaction mode. PostgreSQL here allows 100 connections, shared with every other test
run on the machine: the instances' pools are kept small."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recalld.cluster import Nginx
from tests.cluster.services import PgBouncer, PrivateRedis
from tests.servers import PG_ADMIN_URI, RecalldServer, create_pg_database, drop_pg_database, free_port, server_env

# Three instances x (5 + 2) stay far below max_connections = 100.
SMALL_POOL = {"RECALLD_PG_POOL_SIZE": "5", "RECALLD_PG_MAX_OVERFLOW": "2"}


@dataclass
class ClusterUnderTest:
    """Instances sharing one database, and the nginx in front of them."""

    database_uri: str
    servers: list[RecalldServer]
    nginx: Nginx | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.nginx is not None, "started without nginx"
        return self.nginx.url

    @property
    def database(self) -> str:
        return self.database_uri.rsplit("/", 1)[1]

    def server_with_pid(self, pid: int) -> RecalldServer:
        return next(s for s in self.servers if s.pid == pid)

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query on the cluster's database (straight to PostgreSQL, not through any pool)."""
        uri = PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{self.database}"
        out = subprocess.run(
            ["psql", uri, "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\t", "-c", query],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def upstreams_used(self) -> set[str]:
        """Instances nginx sent requests to, from its access log (`upstream=HOST:PORT`)."""
        assert self.nginx is not None
        log = self.nginx.run_dir / "access.log"
        text = log.read_text() if log.exists() else ""
        return {word.split("=", 1)[1] for word in text.split() if word.startswith("upstream=127.")}

    def logs(self) -> str:
        return "\n".join(f"--- {s.url}\n{s.log_tail(2000)}" for s in self.servers)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of this test alone, dropped at its end."""
    uri = create_pg_database()
    try:
        yield uri
    finally:
        drop_pg_database(uri)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis().start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    # Two server connections per database: client transactions really do hop between server connections.
    bouncer = PgBouncer(pool_size=2).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def start_cluster(tmp_path: Path, fake_openai, pg_database: str):
    """`start_cluster(n, nginx=True, pg_uri=None, **env)`: n instances on the test's database (or `pg_uri`,
    e.g. through PgBouncer), ready on /v1/ready/, with nginx in front; all stopped at the test's end."""
    started: list[ClusterUnderTest] = []

    def start(instances: int = 3, *, nginx: bool = True, pg_uri: str | None = None, **env: str) -> ClusterUnderTest:
        env = {
            **SMALL_POOL,
            "RECALLD_LLM_TIMEOUT": "30",
            "RECALLD_LLM_MAX_RETRIES": "0",
            **env,
        }
        base_env = server_env(tmp_path, pg_uri=pg_uri or pg_database, openai_base_url=fake_openai.base_url, **env)
        cluster = ClusterUnderTest(database_uri=pg_database, servers=[])
        started.append(cluster)
        # Migrate once, so the instances don't all queue on the migration lock at start-up.
        RecalldServer(env=base_env).cli("migrate")
        cluster.servers = [RecalldServer(env=dict(base_env)) for _ in range(instances)]
        # The first alone: instances starting together on a fresh database race to create the default
        # organization (test_instances_starting_together_on_a_fresh_database_all_come_up); the rest together.
        first, *rest = cluster.servers
        first.start(tmp_path).wait_healthy(path="/v1/ready/")
        for server in rest:
            server.launch(tmp_path)
        for server in rest:
            server.wait_healthy(path="/v1/ready/")
        if nginx:
            cluster.nginx = Nginx(
                port=free_port(),
                upstreams=[f"127.0.0.1:{s.port}" for s in cluster.servers],
                run_dir=tmp_path / f"nginx-{len(started)}",
                die_with_parent=True,  # not left behind by a killed test run
            ).start()
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            if cluster.nginx is not None:
                cluster.nginx.stop(graceful=False)
            for server in cluster.servers:
                server.kill()  # the database is dropped next: no drain needed
