"""Sandbox environment variables are sealed at rest (R21, R23): a real `recalld serve` on SQLite and on
PostgreSQL; the value's bytes are not in the database, yet the API returns it and a custom tool sees it."""

from __future__ import annotations

import sqlite3
import subprocess
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest
from letta_client import Letta

from tests.servers import RecalldServer, create_pg_database, drop_pg_database, server_env

MODEL = "openai/gpt-4o-mini"

TOOL_SOURCE = textwrap.dedent(
    '''
    def {name}() -> str:
        """Read the configured token.

        Returns:
            str: The token from the environment.
        """
        import os

        return "token=" + os.environ.get("SANDBOX_TOKEN", "missing")
    '''
).lstrip()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tool_secrets_server(request, tmp_path_factory, fake_openai):
    tmp = tmp_path_factory.mktemp(f"tool-secrets-{request.param}")
    pg_uri = create_pg_database() if request.param == "postgres" else None
    server = RecalldServer(env=server_env(tmp, pg_uri=pg_uri, openai_base_url=fake_openai.base_url))
    try:
        server.start(tmp)
        server.data_dir, server.pg_uri = tmp, pg_uri
        yield server
    finally:
        server.stop()
        if pg_uri:
            drop_pg_database(pg_uri)


def _stored_bytes(server: RecalldServer, var_id: str) -> bytes:
    """What an attacker with a copy of the database reads: the SQLite file and WAL, or the PostgreSQL row."""
    if server.pg_uri is None:
        return b"".join(p.read_bytes() for p in sorted(Path(server.data_dir).glob("recalld.db*")))
    query = f"SELECT value FROM sandbox_env_vars WHERE id = '{var_id}'"
    row = subprocess.run(["psql", server.pg_uri, "-Atc", query], capture_output=True, text=True, check=True).stdout
    assert row.strip(), "the row must exist"
    return row.encode()


def _call_tool(client: Letta, name: str, tool_id: str) -> str:
    agent = client.agents.create(model=MODEL, tool_ids=[tool_id])
    reply = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": f"CALL {name} {{}}"}])
    returned = next(m for m in reply.messages if m.message_type == "tool_return_message")
    assert returned.status == "success", returned
    return returned.tool_return


def test_sandbox_variables_are_sealed_at_rest_but_reach_the_api_and_the_tool(tool_secrets_server):
    server = tool_secrets_server
    value, changed = f"sbx-secret-{uuid.uuid4().hex}", f"sbx-changed-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        config = http.post("/v1/sandbox-config/", json={"config": {}}).json()
        created = http.post(
            f"/v1/sandbox-config/{config['id']}/environment-variable", json={"key": "SANDBOX_TOKEN", "value": value}
        )
        assert created.status_code == 200, created.text
        var = created.json()
        assert var["value"] == value
        listed = http.get(f"/v1/sandbox-config/{config['id']}/environment-variable").json()
        assert [(v["key"], v["value"]) for v in listed] == [("SANDBOX_TOKEN", value)]
        assert value.encode() not in _stored_bytes(server, var["id"])

        client = Letta(base_url=server.url, max_retries=0, timeout=60)
        name = "read_sbx_" + uuid.uuid4().hex[:8]
        tool = client.tools.create(source_code=TOOL_SOURCE.replace("{name}", name))
        assert f"token={value}" in _call_tool(client, name, tool.id)

        updated = http.patch(f"/v1/sandbox-config/environment-variable/{var['id']}", json={"value": changed})
        assert updated.status_code == 200 and updated.json()["value"] == changed, updated.text
        assert changed.encode() not in _stored_bytes(server, var["id"])
        assert f"token={changed}" in _call_tool(client, name, tool.id)
        renamed = http.patch(f"/v1/sandbox-config/environment-variable/{var['id']}", json={"description": "d"})
        assert renamed.json()["value"] == changed


def test_plain_rows_of_earlier_versions_still_read_and_rotate_seals_them(tmp_path, fake_openai):
    server = RecalldServer(env=server_env(tmp_path, pg_uri=None, openai_base_url=fake_openai.base_url))
    legacy = f"legacy-plain-{uuid.uuid4().hex}"
    try:
        server.start(tmp_path)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            config = http.post("/v1/sandbox-config/", json={"config": {}}).json()
            url = f"/v1/sandbox-config/{config['id']}/environment-variable"
            var = http.post(url, json={"key": "SANDBOX_TOKEN", "value": "placeholder"}).json()
            with sqlite3.connect(tmp_path / "recalld.db") as db:  # what the previous version wrote
                db.execute("UPDATE sandbox_env_vars SET value = ? WHERE id = ?", (legacy, var["id"]))
            assert [v["value"] for v in http.get(url).json()] == [legacy]
    finally:
        server.stop()
    rotate = server.cli("secrets", "rotate", check=False)
    assert rotate.returncode == 0 and "1 sandbox environment variable(s)" in rotate.stderr, rotate.stderr
    with sqlite3.connect(tmp_path / "recalld.db") as db:
        (stored,) = db.execute("SELECT value FROM sandbox_env_vars WHERE id = ?", (var["id"],)).fetchone()
    assert stored.startswith("recalld-sealed:") and legacy not in stored
    assert legacy.encode() not in b"".join(p.read_bytes() for p in sorted(tmp_path.glob("recalld.db*")))
    try:
        server.start(tmp_path)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert [v["value"] for v in http.get(url).json()] == [legacy]
    finally:
        server.stop()
