"""API tests run against a real `recalld serve` twice: on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from letta_client import Letta

from tests.servers import RecalldServer, create_pg_database, drop_pg_database, server_env

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, tmp_path_factory, fake_openai):
    backend = request.param
    tmp_dir = tmp_path_factory.mktemp(f"recalld-{backend}")
    pg_uri = create_pg_database() if backend == "postgres" else None
    # A short provider timeout and one retry keep the failure tests quick.
    env = server_env(
        tmp_dir,
        pg_uri=pg_uri,
        openai_base_url=fake_openai.base_url,
        RECALLD_LLM_TIMEOUT="4",
        RECALLD_LLM_MAX_RETRIES="1",
        RECALLD_LEASE_WAIT="60",
    )
    srv = RecalldServer(env=env)
    srv.backend = backend
    srv.start(tmp_dir)
    try:
        yield srv
    finally:
        srv.stop()
        if pg_uri:
            drop_pg_database(pg_uri)


@pytest.fixture
def client(server) -> Letta:
    # No retries: a test must see the first answer, not a retried one.
    return Letta(base_url=server.url, max_retries=0, timeout=30)


@pytest.fixture
def other_org_client(server) -> Letta:
    """A client of a second organization, through an API key made by `recalld keys create`."""
    key = server.cli("keys", "create", "--org", "other-org").stdout.strip()
    return Letta(base_url=server.url, api_key=key, max_retries=0, timeout=30)
