"""`auth: required`: every request needs a valid key, except health and readiness (contract R18)."""

from __future__ import annotations

import httpx
import pytest
from letta_client import AuthenticationError, Letta, NotFoundError

from tests.servers import RecalldServer, create_pg_database, drop_pg_database, server_env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def locked_server(request, tmp_path_factory, fake_openai):
    tmp = tmp_path_factory.mktemp("auth")
    pg_uri = create_pg_database() if request.param == "postgres" else None
    srv = RecalldServer(
        env=server_env(tmp, pg_uri=pg_uri, openai_base_url=fake_openai.base_url, RECALLD_AUTH="required")
    )
    srv.start(tmp)
    yield srv
    srv.stop()
    if pg_uri:
        drop_pg_database(pg_uri)


def test_request_without_key_is_401(locked_server):
    with pytest.raises(AuthenticationError):
        Letta(base_url=locked_server.url, max_retries=0).agents.list()


def test_health_and_readiness_need_no_key(locked_server):
    assert httpx.get(f"{locked_server.url}/v1/health/", timeout=10).status_code == 200
    assert httpx.get(f"{locked_server.url}/v1/ready/", timeout=10).status_code == 200


def test_keys_of_two_organizations_see_only_their_own(locked_server):
    acme = Letta(
        base_url=locked_server.url,
        api_key=locked_server.cli("keys", "create", "--org", "acme").stdout.strip(),
        max_retries=0,
    )
    globex = Letta(
        base_url=locked_server.url,
        api_key=locked_server.cli("keys", "create", "--org", "globex").stdout.strip(),
        max_retries=0,
    )
    agent = acme.agents.create(
        model="openai/gpt-4o-mini", memory_blocks=[{"label": "human", "value": "acme"}]
    )
    assert [a.id for a in acme.agents.list()] == [agent.id]
    assert globex.agents.list().items == []
    with pytest.raises(NotFoundError):
        globex.agents.retrieve(agent.id)
    with pytest.raises(NotFoundError):
        globex.blocks.retrieve(agent.blocks[0].id)
    # Each organization has its own built-in tools.
    acme_tools = {t.id for t in acme.tools.list()}
    globex_tools = {t.id for t in globex.tools.list()}
    assert acme_tools and globex_tools and not (acme_tools & globex_tools)


def test_second_user_of_an_organization_shares_its_agents(locked_server):
    first = Letta(
        base_url=locked_server.url,
        api_key=locked_server.cli("keys", "create", "--org", "shared", "--user", "ann").stdout.strip(),
        max_retries=0,
    )
    second = Letta(
        base_url=locked_server.url,
        api_key=locked_server.cli("keys", "create", "--org", "shared", "--user", "bob").stdout.strip(),
        max_retries=0,
    )
    agent = first.agents.create(model="openai/gpt-4o-mini")
    got = second.agents.retrieve(agent.id)
    assert (
        got.created_by_id
        == agent.created_by_id
        != second.agents.update(agent.id, description="x").last_updated_by_id
    )
