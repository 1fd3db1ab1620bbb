"""Schemathesis over every route with organization A's key while organization B's agent, blocks, tool, passage,
archive and run exist: no input makes a 5xx, and no response carries anything of B's (R18, R16). Every path id
the fuzzer would make up is replaced by B's id of that kind, as an attacker who learnt B's ids would send it."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from letta_client import Letta
from schemathesis.checks import not_a_server_error

from tests.api.test_openapi_fuzz import wrong_body_is_rejected


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def two_orgs(server):
    """Org A's key, and B's ids by path parameter name and the values only B may read."""
    a_key = server.cli("keys", "create", "--org", _unique("fuzz-a")).stdout.strip()
    b_key = server.cli("keys", "create", "--org", _unique("fuzz-b")).stdout.strip()
    b = Letta(base_url=server.url, api_key=b_key, max_retries=0, timeout=60)
    values = {name: _unique(name) for name in ("block-value", "secret-value", "passage-text", "tool-marker",
                                               "agent-name", "archive-name", "standalone-block")}
    tool_name = "b_tool_" + uuid.uuid4().hex[:8]
    tool = b.tools.create(source_code=(
        f'def {tool_name}(x: int) -> int:\n    """Return x ({values["tool-marker"]}).\n\n    Args:\n'
        '        x: A number.\n\n    Returns:\n        int: x.\n    """\n    return x\n'))
    agent = b.agents.create(
        model="openai/gpt-4o-mini", name=values["agent-name"], tool_ids=[tool.id],
        memory_blocks=[{"label": "human", "value": values["block-value"]}],
        secrets={"B_SECRET": values["secret-value"]},
    )
    block = b.blocks.create(label="notes", value=values["standalone-block"])
    [passage] = b.agents.passages.create(agent.id, text=values["passage-text"])
    archive = b.archives.create(name=values["archive-name"])
    reply = b.agents.messages.create(agent.id, messages=[{"role": "user", "content": "hello from B"}])
    run_id, step_id = reply.messages[0].run_id, reply.messages[0].step_id
    ids = {
        "agent_id": agent.id, "block_id": block.id, "tool_id": tool.id, "passage_id": passage.id,
        "memory_id": passage.id, "archive_id": archive.id, "run_id": run_id, "step_id": step_id,
    }
    yield {"a_key": a_key, "ids": ids, "values": values, "b": b, "agent_block_id": agent.blocks[0].id}
    # Nothing A sent changed B's data.
    assert b.agents.retrieve(agent.id).name == values["agent-name"]
    assert b.blocks.retrieve(block.id).value == values["standalone-block"]
    assert b.blocks.retrieve(agent.blocks[0].id).value == values["block-value"]
    assert b.tools.retrieve(tool.id).name == tool_name
    assert [p.text for p in b.agents.passages.list(agent.id)] == [values["passage-text"]]


@pytest.fixture
def two_org_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("two_org_schema")


def _leaks(text: str, case, two_orgs: dict) -> list[str]:  # noqa: ANN001
    """B's values and ids in a response, except ids the request itself named (a 404 may echo them)."""
    sent = " ".join(str(v) for v in (case.path_parameters or {}).values()) + str(case.body) + str(case.query)
    secret = [v for v in two_orgs["values"].values() if v in text]
    named = [i for i in (*two_orgs["ids"].values(), two_orgs["agent_block_id"]) if i in text and i not in sent]
    return secret + named


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_organization_a_never_reaches_organization_b(case, two_orgs):
    for name in list(case.path_parameters or {}):
        if name in two_orgs["ids"]:
            case.path_parameters[name] = two_orgs["ids"][name]
    response = case.call(headers={"Authorization": f"Bearer {two_orgs['a_key']}"})
    case.validate_response(response, checks=[not_a_server_error, wrong_body_is_rejected])
    leaked = _leaks(response.text, case, two_orgs)
    assert not leaked, f"{case.method} {case.formatted_path} answered {response.status_code} with B's {leaked}"
