"""Secure by default (R21, R18), against real `recalld serve` processes: no open server by accident, docs and
metrics behind keys, Letta's placeholder bearers, secrets encrypted at rest (SQLite file and PostgreSQL row) and
rotated, no key or secret in text or JSON logs, and revocation within 1 s across instances sharing Redis."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from letta_client import AuthenticationError, InternalServerError, Letta

from recalld.exposure import is_loopback
from recalld.obs.logs import JsonFormatter, TextFormatter, remember_secret_values
from tests.servers import RecalldServer, create_pg_database, drop_pg_database, free_port, server_env

MODEL = "openai/gpt-4o-mini"
METRICS_TOKEN = "metrics-token-" + uuid.uuid4().hex
REDIS_URL = "redis://127.0.0.1:6379/0"
SMALL_POOL = {"RECALLD_PG_POOL_SIZE": "4", "RECALLD_PG_MAX_OVERFLOW": "2"}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _new_key(server: RecalldServer, org: str) -> tuple[str, str]:
    """(key, key id) from `recalld keys create`."""
    created = server.cli("keys", "create", "--org", org)
    key_id = next(line.split(": ", 1)[1] for line in created.stderr.splitlines() if line.startswith("key id"))
    return created.stdout.strip(), key_id


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _launch(tmp: Path, fake_openai, *, host: str | None = None, pg_uri: str | None = None, **env: str):
    """A server process with these settings, not waited for (it may be meant to refuse)."""
    server = RecalldServer(env=server_env(tmp, pg_uri=pg_uri, openai_base_url=fake_openai.base_url, **env))
    server.log_path = tmp / f"recalld-{server.port}.log"
    argv = ["serve", "--port", str(server.port)] + (["--host", host] if host else [])
    with open(server.log_path, "wb") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-m", "recalld", *argv],
            env=server.env, stdout=log, stderr=subprocess.STDOUT,
        )
    return server


@pytest.fixture(scope="module")
def defaults_open_server(tmp_path_factory, fake_openai):
    """Auth off (the embedded default), text logs at info, a key of its own."""
    tmp = tmp_path_factory.mktemp("defaults-open")
    env = server_env(tmp, pg_uri=None, openai_base_url=fake_openai.base_url, RECALLD_LOG_FORMAT="text",
                     RECALLD_LOG_LEVEL="info", RECALLD_SECRETS_KEY=Fernet.generate_key().decode())
    server = RecalldServer(env=env).start(tmp)
    server.data_dir = tmp
    yield server
    server.stop()


@pytest.fixture(scope="module")
def defaults_locked_server(tmp_path_factory, fake_openai):
    """Auth required, a metrics token, JSON logs at info, a short key cache and no Redis."""
    tmp = tmp_path_factory.mktemp("defaults-locked")
    env = server_env(tmp, pg_uri=None, openai_base_url=fake_openai.base_url, RECALLD_AUTH="required",
                     RECALLD_METRICS_TOKEN=METRICS_TOKEN, RECALLD_LOG_LEVEL="info", RECALLD_KEY_CACHE_TTL_S="2")
    server = RecalldServer(env=env).start(tmp)
    server.data_dir = tmp
    yield server
    server.stop()


# --- no open server by accident ----------------------------------------------------------------------------


def test_loopback_is_127_8_ipv6_loopback_and_localhost_only():
    assert all(map(is_loopback, ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com", ""]))


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_auth_off_on_every_interface_refuses_to_start_before_listening(tmp_path, fake_openai, host):
    server = _launch(tmp_path, fake_openai, host=host)
    assert server.process.wait(timeout=60) == 2
    log = server.log_tail()
    assert f"refusing to serve without authentication on {host}" in log
    assert "RECALLD_AUTH=required" in log and "RECALLD_ALLOW_UNAUTHENTICATED=true" in log
    assert _nothing_listens(server.port)
    assert not (tmp_path / "recalld.db").exists()  # refused before anything was opened


def test_auth_off_on_every_interface_starts_with_the_override_and_warns(tmp_path, fake_openai):
    server = _launch(tmp_path, fake_openai, host="0.0.0.0", RECALLD_ALLOW_UNAUTHENTICATED="true")
    try:
        server.wait_healthy()
        assert httpx.get(f"{server.url}/v1/agents/", timeout=10).status_code == 200
        assert "authentication is off" in server.log_tail()
    finally:
        server.stop()


def test_auth_off_on_loopback_starts_and_warns(defaults_open_server):
    assert "authentication is off (RECALLD_AUTH=off)" in defaults_open_server.log_path.read_text()


def test_auth_required_on_every_interface_starts_without_a_warning(tmp_path, fake_openai):
    server = _launch(tmp_path, fake_openai, host="0.0.0.0", RECALLD_AUTH="required")
    try:
        server.wait_healthy()
        assert httpx.get(f"{server.url}/v1/agents/", timeout=10).status_code == 401
        assert "authentication is off" not in server.log_tail()
    finally:
        server.stop()


# --- docs and metrics --------------------------------------------------------------------------------------

DOC_PATHS = ("/openapi.json", "/docs", "/redoc")


def test_docs_need_a_key_when_auth_is_required(defaults_locked_server):
    url = defaults_locked_server.url
    key, _ = _new_key(defaults_locked_server, "docs-reader")
    for path in DOC_PATHS:
        refused = httpx.get(f"{url}{path}", timeout=10)
        assert refused.status_code == 401 and "API key" in refused.json()["detail"], path
        assert httpx.get(f"{url}{path}", headers=_bearer("undefined"), timeout=10).status_code == 401
        assert httpx.get(f"{url}{path}", headers=_bearer(key), timeout=10).status_code == 200, path
    assert "/v1/agents/" in httpx.get(f"{url}/openapi.json", headers=_bearer(key), timeout=10).json()["paths"]
    for path in ("/v1/health/", "/v1/ready/"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 200


def test_public_docs_opens_the_docs_and_nothing_else(tmp_path, fake_openai):
    server = _launch(tmp_path, fake_openai, RECALLD_AUTH="required", RECALLD_PUBLIC_DOCS="true")
    try:
        server.wait_healthy()
        for path in DOC_PATHS:
            assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path
        assert httpx.get(f"{server.url}/v1/agents/", timeout=10).status_code == 401
    finally:
        server.stop()


def test_docs_are_open_with_auth_off(defaults_open_server):
    for path in DOC_PATHS:
        assert httpx.get(f"{defaults_open_server.url}{path}", timeout=10).status_code == 200, path


def test_metrics_token_is_required_when_set(defaults_locked_server):
    url = f"{defaults_locked_server.url}/metrics"
    key, _ = _new_key(defaults_locked_server, "metrics-prober")
    for headers in ({}, _bearer("wrong"), _bearer(key), {"Authorization": METRICS_TOKEN}):
        refused = httpx.get(url, headers=headers, timeout=10)
        assert refused.status_code == 401 and "RECALLD_METRICS_TOKEN" in refused.json()["detail"], headers
    served = httpx.get(url, headers=_bearer(METRICS_TOKEN), timeout=10)
    assert served.status_code == 200 and "recalld_" in served.text


# --- R18: bearers that are not recalld keys ----------------------------------------------------------------

PLACEHOLDERS = ("undefined", "null", "placeholder", "sk-let-" + "a1b2c3d4" * 6, "letta-cloud-key", "x")


def test_placeholder_bearers_act_as_the_default_organization_with_auth_off(defaults_open_server):
    url = defaults_open_server.url
    default_agent = Letta(base_url=url, max_retries=0).agents.create(model=MODEL, name=_unique("default"))
    for token in PLACEHOLDERS:
        listed = httpx.get(f"{url}/v1/agents/", headers=_bearer(token), timeout=10)
        assert listed.status_code == 200, token
        assert default_agent.id in [a["id"] for a in listed.json()], token
    # The SDK with a placeholder key, as Letta clients configured for the cloud send it.
    sdk = Letta(base_url=url, api_key="undefined", max_retries=0)
    assert default_agent.id in [a.id for a in sdk.agents.list()]


def test_a_valid_key_selects_its_organization_with_auth_off(defaults_open_server):
    url = defaults_open_server.url
    default_agent = Letta(base_url=url, max_retries=0).agents.create(model=MODEL)
    key, _ = _new_key(defaults_open_server, "r18-org")
    own = Letta(base_url=url, api_key=key, max_retries=0)
    mine = own.agents.create(model=MODEL)
    listed = [a.id for a in own.agents.list()]
    assert listed == [mine.id] and default_agent.id not in listed


def test_unknown_and_revoked_recalld_keys_stay_401_with_auth_off(defaults_open_server):
    url = defaults_open_server.url
    unknown = f"rk-{uuid.uuid4()}.{uuid.uuid4().hex}"
    key, key_id = _new_key(defaults_open_server, "r18-revoked")
    defaults_open_server.cli("keys", "revoke", "--org", "r18-revoked", key_id)
    for token in (unknown, "rk-garbage", key):
        assert httpx.get(f"{url}/v1/agents/", headers=_bearer(token), timeout=10).status_code == 401, token
    with pytest.raises(AuthenticationError):
        Letta(base_url=url, api_key=unknown, max_retries=0).agents.list()


def test_placeholder_bearers_are_401_when_auth_is_required(defaults_locked_server):
    for token in PLACEHOLDERS:
        response = httpx.get(f"{defaults_locked_server.url}/v1/agents/", headers=_bearer(token), timeout=10)
        assert response.status_code == 401, token


# --- secrets at rest ---------------------------------------------------------------------------------------

TOOL_SOURCE = textwrap.dedent(
    '''
    def {name}() -> str:
        """Read the agent's service token.

        Returns:
            str: The token from the environment.
        """
        import os

        return "token=" + os.environ.get("SERVICE_TOKEN", "missing") + " other=" + os.environ.get("OTHER", "-")
    '''
).lstrip()


def _database_bytes(data_dir: Path) -> bytes:
    """The SQLite file and its WAL, as an attacker copying them would read them."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("recalld.db*")))


def _shown_secrets(agent) -> dict[str, str]:  # noqa: ANN001
    return {s.key: s.value for s in agent.secrets or []}


def test_secrets_are_not_in_the_sqlite_file_but_reach_the_tool_and_the_agent_state(defaults_open_server):
    client = Letta(base_url=defaults_open_server.url, max_retries=0, timeout=60)
    token, other = _unique("svc-token"), _unique("other-value")
    name = "read_token_" + uuid.uuid4().hex[:8]
    tool = client.tools.create(source_code=TOOL_SOURCE.replace("{name}", name))
    agent = client.agents.create(
        model=MODEL, tool_ids=[tool.id], secrets={"SERVICE_TOKEN": token},
        tool_exec_environment_variables={"OTHER": other},
    )
    assert _shown_secrets(agent) == {"SERVICE_TOKEN": token, "OTHER": other}
    assert _shown_secrets(client.agents.retrieve(agent.id, include=["agent.secrets"])) == {
        "SERVICE_TOKEN": token, "OTHER": other}
    stored = _database_bytes(defaults_open_server.data_dir)
    assert token.encode() not in stored and other.encode() not in stored
    # (The tool's return is conversation: what a tool returns is stored as the agent's history, as in Letta.)
    reply = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": f"CALL {name} {{}}"}])
    returned = next(m for m in reply.messages if m.message_type == "tool_return_message")
    assert returned.status == "success" and f"token={token} other={other}" in returned.tool_return

    changed = _unique("rotated-by-update")
    client.agents.update(agent.id, secrets={"SERVICE_TOKEN": changed})
    assert _shown_secrets(client.agents.retrieve(agent.id)) == {"SERVICE_TOKEN": changed}
    assert changed.encode() not in _database_bytes(defaults_open_server.data_dir)


def test_the_embedded_default_generates_a_private_key_into_recalld_dir(tmp_path, fake_openai):
    server = _launch(tmp_path, fake_openai)
    try:
        server.wait_healthy()
        key_file = tmp_path / "secrets.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        value = _unique("generated-key-secret")
        agent = Letta(base_url=server.url, max_retries=0).agents.create(model=MODEL, secrets={"S": value})
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "recalld.db") as db:
        (stored,) = db.execute("SELECT secrets FROM agents WHERE id = ?", (agent.id,)).fetchone()
    token = json.loads(stored)
    assert isinstance(token, str) and value not in stored
    assert json.loads(Fernet(key_file.read_text().strip()).decrypt(token.encode())) == {"S": value}


def _launch_until_exit_or_healthy(server: RecalldServer) -> int | None:
    """None once healthy; the exit status if it stopped first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return server.process.returncode
        try:
            if httpx.get(f"{server.url}/v1/health/", timeout=1).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("neither healthy nor exited")


def test_rotate_reencrypts_every_row_and_an_instance_with_the_old_key_alone_refuses(tmp_path, fake_openai):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_value, legacy_value = _unique("sealed"), _unique("legacy-plain")
    server = _launch(tmp_path, fake_openai, RECALLD_SECRETS_KEY=old_key)
    try:
        server.wait_healthy()
        client = Letta(base_url=server.url, max_retries=0)
        sealed = client.agents.create(model=MODEL, secrets={"SEALED": sealed_value})
        legacy = client.agents.create(model=MODEL)
        # An earlier version wrote secrets in plain text: such a row is still read.
        with sqlite3.connect(tmp_path / "recalld.db") as db:
            db.execute("UPDATE agents SET secrets = ? WHERE id = ?", (json.dumps({"LEGACY": legacy_value}), legacy.id))
        assert _shown_secrets(client.agents.retrieve(legacy.id)) == {"LEGACY": legacy_value}
    finally:
        server.stop()

    rotate = server.cli("secrets", "rotate", check=False)  # the old key alone: nothing to rotate to, but it works
    assert rotate.returncode == 0, rotate.stderr
    server.env["RECALLD_SECRETS_KEY"] = f"{new_key},{old_key}"
    rotate = server.cli("secrets", "rotate", check=False)
    assert rotate.returncode == 0 and "re-encrypted the secrets of 2 agent(s) and" in rotate.stderr, rotate.stderr

    with sqlite3.connect(tmp_path / "recalld.db") as db:
        rows = dict(db.execute("SELECT id, secrets FROM agents WHERE id IN (?, ?)", (sealed.id, legacy.id)))
    new_only = Fernet(new_key)
    assert json.loads(new_only.decrypt(json.loads(rows[sealed.id]).encode())) == {"SEALED": sealed_value}
    assert json.loads(new_only.decrypt(json.loads(rows[legacy.id]).encode())) == {"LEGACY": legacy_value}
    assert legacy_value.encode() not in _database_bytes(tmp_path)

    stale = _launch(tmp_path, fake_openai, RECALLD_SECRETS_KEY=old_key)
    assert _launch_until_exit_or_healthy(stale) not in (None, 0)
    assert "cannot decrypt this database's secrets" in stale.log_tail()
    stranger = _launch(tmp_path, fake_openai, RECALLD_SECRETS_KEY=Fernet.generate_key().decode())
    assert _launch_until_exit_or_healthy(stranger) not in (None, 0)

    current = _launch(tmp_path, fake_openai, RECALLD_SECRETS_KEY=new_key)
    try:
        current.wait_healthy()
        client = Letta(base_url=current.url, max_retries=0)
        assert _shown_secrets(client.agents.retrieve(sealed.id)) == {"SEALED": sealed_value}
        assert _shown_secrets(client.agents.retrieve(legacy.id)) == {"LEGACY": legacy_value}
    finally:
        current.stop()


def test_a_malformed_secrets_key_refuses_to_start_with_a_clear_message(tmp_path, fake_openai):
    server = _launch(tmp_path, fake_openai, RECALLD_SECRETS_KEY="not-a-fernet-key")
    assert server.process.wait(timeout=60) == 2
    assert "key 1 is not a Fernet key" in server.log_tail() and "not-a-fernet-key" not in server.log_tail()


def test_postgres_without_a_secrets_key_refuses_to_start(tmp_path, fake_openai):
    env = {"RECALLD_PG_URI": "postgresql://postgres@127.0.0.1:5432/postgres"}
    server = RecalldServer(env={**server_env(tmp_path, pg_uri=None, openai_base_url=fake_openai.base_url), **env})
    result = server.cli("serve", "--port", str(free_port()), check=False)
    assert result.returncode == 2
    assert "RECALLD_SECRETS_KEY is not set" in result.stderr and "recalld secrets generate-key" in result.stderr


# --- two instances on one PostgreSQL database and Redis ----------------------------------------------------


@pytest.fixture(scope="module")
def defaults_pg_pair(tmp_path_factory, fake_openai):
    """Two instances sharing a PostgreSQL database (its URI carries a password) and Redis; auth required, text
    logs, and a key cache long enough that only the Redis announcement can explain a fast revocation."""
    tmp = tmp_path_factory.mktemp("defaults-pg")
    plain_uri = create_pg_database()
    pg_password = _unique("pg-password")
    pg_uri = plain_uri.replace("postgresql://postgres@", f"postgresql://postgres:{pg_password}@")
    env = server_env(tmp, pg_uri=pg_uri, openai_base_url=fake_openai.base_url, RECALLD_AUTH="required",
                     RECALLD_REDIS_URL=REDIS_URL, RECALLD_KEY_CACHE_TTL_S="30", RECALLD_LOG_FORMAT="text",
                     RECALLD_LOG_LEVEL="info", **SMALL_POOL)
    servers = []
    try:
        for _ in range(2):  # one after the other: the first creates the default organization
            servers.append(RecalldServer(env=dict(env)).start(tmp))
        yield servers, plain_uri, pg_password
    finally:
        for server in servers:
            server.stop()
        drop_pg_database(plain_uri)


def test_secrets_are_not_readable_in_the_postgres_row(defaults_pg_pair):
    (first, second), plain_uri, _ = defaults_pg_pair
    key, _ = _new_key(first, "pg-secrets")
    value = _unique("pg-secret")
    agent = Letta(base_url=first.url, api_key=key, max_retries=0).agents.create(model=MODEL, secrets={"K": value})
    row = subprocess.run(["psql", plain_uri, "-Atc", f"SELECT secrets::text FROM agents WHERE id = '{agent.id}'"],
                         capture_output=True, text=True, check=True).stdout
    assert row.strip().startswith('"gAAAA') and value not in row
    # The other instance, with the same key, reads it.
    shown = Letta(base_url=second.url, api_key=key, max_retries=0).agents.retrieve(agent.id)
    assert _shown_secrets(shown) == {"K": value}


def _refused_within(servers: list[RecalldServer], key: str, limit_s: float) -> list[float]:
    """Seconds until each server answers the key with 401 (polled every 20 ms, up to limit_s + 2 s)."""
    started = time.monotonic()
    waited: dict[int, float] = {}
    with httpx.Client(timeout=5) as http:
        while len(waited) < len(servers) and time.monotonic() - started < limit_s + 2:
            for server in servers:
                if server.port not in waited:
                    if http.get(f"{server.url}/v1/agents/", headers=_bearer(key)).status_code == 401:
                        waited[server.port] = time.monotonic() - started
            time.sleep(0.02)
    return [waited.get(s.port, float("inf")) for s in servers]


def test_a_revoked_key_is_refused_by_every_instance_within_a_second_through_redis(defaults_pg_pair):
    servers, _, _ = defaults_pg_pair
    key, key_id = _new_key(servers[0], "revoke-fast")
    for server in servers:  # both instances have it cached now (for 30 s)
        assert httpx.get(f"{server.url}/v1/agents/", headers=_bearer(key), timeout=10).status_code == 200
    revoked = servers[0].cli("keys", "revoke", "--org", "revoke-fast", key_id)
    assert "announced to" in revoked.stderr
    waited = _refused_within(servers, key, 1.0)
    assert max(waited) < 1.0, waited


def test_a_revoked_key_is_refused_within_the_cache_ttl_without_redis(defaults_locked_server):
    key, key_id = _new_key(defaults_locked_server, "revoke-ttl")
    assert httpx.get(f"{defaults_locked_server.url}/v1/agents/", headers=_bearer(key), timeout=10).status_code == 200
    revoked = defaults_locked_server.cli("keys", "revoke", "--org", "revoke-ttl", key_id)
    assert "RECALLD_KEY_CACHE_TTL_S (2 s)" in revoked.stderr
    [waited] = _refused_within([defaults_locked_server], key, 2.0)
    assert waited <= 2.0 + 0.3, waited


# --- logs --------------------------------------------------------------------------------------------------


def test_text_and_json_formatters_redact_the_same(monkeypatch):
    import logging

    secret_value = _unique("agent-secret-value")
    remember_secret_values([secret_value])
    texts = [
        "connecting to postgresql://app:hunter2-pw@db:5432/recalld",
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
        "GET /v1/agents/?api_key=rk-0123456789abcdef.zzzzzzzzzzzzz HTTP/1.1",
        "provider said: invalid key sk-proj-ABCDEFGHIJKLMNOP",
        f"tool failed: {secret_value} not accepted",
    ]
    for text in texts:
        record = logging.LogRecord("recalld.test", logging.ERROR, __file__, 1, "%s", (text,), None)
        as_json = json.loads(JsonFormatter().format(record))["message"]
        as_text = TextFormatter().format(record).split("recalld.test: ", 1)[1]
        assert as_text == as_json, text
        for leaked in ("hunter2-pw", "abcdefghijklmnopqrstuvwxyz0123", "0123456789abcdef", "ABCDEFGHIJKLMNOP",
                       secret_value):
            assert leaked not in as_text


def _drive_requests_that_carry_secrets(server: RecalldServer, key: str) -> list[str]:
    """Requests carrying a key, secrets and a tool error that prints one; returns what must never be logged."""
    secret_value, bad_key = _unique("log-secret"), f"rk-{uuid.uuid4()}.{uuid.uuid4().hex}"
    client = Letta(base_url=server.url, api_key=key, max_retries=0, timeout=60)
    name = "leaky_" + uuid.uuid4().hex[:8]
    source = textwrap.dedent(
        f'''
        def {name}() -> str:
            """Fail with the secret in the message.

            Returns:
                str: Nothing, it raises.
            """
            import os

            raise RuntimeError("token " + os.environ["LOG_SECRET"])
        '''
    ).lstrip()
    tool = client.tools.create(source_code=source)
    agent = client.agents.create(model=MODEL, tool_ids=[tool.id], secrets={"LOG_SECRET": secret_value})
    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": f"CALL {name} {{}}"}])
    with pytest.raises(InternalServerError):  # the provider fails: an error path that logs
        client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "FAIL 500"}])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.get("/v1/agents/", headers=_bearer(bad_key))  # 401
        http.get(f"/v1/no-such-route?api_key={key}&token={secret_value}")  # 404, the key in the access line
        http.post("/v1/agents/", headers=_bearer(key), content=b'{"secrets": {"A": "' + secret_value.encode())
    return [key, key.split(".", 1)[1], bad_key.split(".", 1)[1], secret_value]


def _assert_log_is_clean(server: RecalldServer, forbidden: list[str]) -> None:
    time.sleep(0.3)  # the last access lines
    log = server.log_path.read_text(errors="replace")
    assert "/v1/no-such-route" in log and "[redacted]" in log  # the requests were logged, redacted
    for value in forbidden:
        assert value not in log, value


def test_text_logs_carry_no_key_or_secret(defaults_open_server):
    key, _ = _new_key(defaults_open_server, "text-logs")
    _assert_log_is_clean(defaults_open_server, _drive_requests_that_carry_secrets(defaults_open_server, key))


def test_json_logs_carry_no_key_or_secret(defaults_locked_server):
    key, _ = _new_key(defaults_locked_server, "json-logs")
    _assert_log_is_clean(defaults_locked_server, _drive_requests_that_carry_secrets(defaults_locked_server, key))
    assert json.loads(defaults_locked_server.log_path.read_text().splitlines()[-1])  # JSON lines indeed


def test_logs_of_instances_on_postgres_carry_no_database_password_or_metrics_token(defaults_pg_pair):
    servers, _, pg_password = defaults_pg_pair
    key, _ = _new_key(servers[0], "pg-logs")
    forbidden = _drive_requests_that_carry_secrets(servers[0], key) + [pg_password]
    _assert_log_is_clean(servers[0], forbidden)
    assert pg_password not in servers[1].log_path.read_text(errors="replace")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_start_up_failure_logs_no_database_password(tmp_path, fake_openai, log_format):
    password = _unique("unreachable-pw")
    uri = f"postgresql://recalld:{password}@127.0.0.1:{free_port()}/recalld"
    server = _launch(tmp_path, fake_openai, RECALLD_PG_URI=uri, RECALLD_SECRETS_KEY=Fernet.generate_key().decode(),
                     RECALLD_LOG_FORMAT=log_format)
    assert server.process.wait(timeout=60) != 0
    log = server.log_tail(20_000)
    assert "Traceback" in log or "exc" in log
    assert password not in log



def test_a_revocation_missed_while_redis_is_down_still_takes_effect_and_the_feed_comes_back(tmp_path, fake_openai):
    from tests.cluster.services import PrivateRedis

    redis = PrivateRedis().start()
    server = _launch(tmp_path, fake_openai, RECALLD_AUTH="required", RECALLD_REDIS_URL=redis.url,
                     RECALLD_KEY_CACHE_TTL_S="60")
    agents_url = f"{server.url}/v1/agents/"
    try:
        server.wait_healthy()
        key, key_id = _new_key(server, "reconnect")
        assert httpx.get(agents_url, headers=_bearer(key), timeout=10).status_code == 200  # cached for 60 s
        redis.kill()
        revoked = server.cli("keys", "revoke", "--org", "reconnect", key_id)
        assert "could not announce through Redis" in revoked.stderr
        # The announcement was lost, but without its subscription the instance keeps no key for long.
        [waited] = _refused_within([server], key, 3.0)
        assert waited < 3.0, waited

        redis.start()  # same port: the feed subscribes again
        second, second_id = _new_key(server, "reconnect")
        deadline = time.monotonic() + 10
        while True:
            assert httpx.get(agents_url, headers=_bearer(second), timeout=10).status_code == 200
            announced = server.cli("keys", "revoke", "--org", "reconnect", second_id, check=False)
            if "announced to 1 instance(s)" in announced.stderr or time.monotonic() > deadline:
                break
            second, second_id = _new_key(server, "reconnect")  # not subscribed yet: try with a fresh key
        assert "announced to 1 instance(s)" in announced.stderr, announced.stderr
        [waited] = _refused_within([server], second, 1.0)
        assert waited < 1.0, waited
    finally:
        server.stop()
        redis.stop()
