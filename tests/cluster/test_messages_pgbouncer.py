"""The message tests (tests/api/test_messages.py) once more, against a recalld that reaches PostgreSQL through a
PgBouncer in transaction mode with pooling off (RECALLD_DISABLE_POOLING=true): PgBouncer in
transaction mode passes the message tests. Every transaction may land on another server connection and no prepared
statement survives between them, so anything that relied on session state would show here."""

from __future__ import annotations

import pytest
from letta_client import Letta

from tests.api.test_messages import *  # noqa: F403 - the same tests, collected again with this module's server
from tests.servers import RecalldServer, create_pg_database, drop_pg_database, server_env


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_openai, pgbouncer):
    tmp_dir = tmp_path_factory.mktemp("recalld-pgbouncer")
    direct_uri = create_pg_database()
    env = server_env(
        tmp_dir,
        pg_uri=pgbouncer.uri_for(direct_uri),
        openai_base_url=fake_openai.base_url,
        RECALLD_DISABLE_POOLING="true",
        # As tests/api/conftest.py: a short provider timeout and one retry keep the failure tests quick.
        RECALLD_LLM_TIMEOUT="4",
        RECALLD_LLM_MAX_RETRIES="1",
        RECALLD_LEASE_WAIT="60",
    )
    srv = RecalldServer(env=env)
    srv.backend = "pgbouncer"
    srv.start(tmp_dir)
    try:
        yield srv
    finally:
        srv.stop()
        drop_pg_database(direct_uri)


@pytest.fixture
def client(server) -> Letta:
    return Letta(base_url=server.url, max_retries=0, timeout=30)
