"""A custom tool's network (R23 + R20): real bwrap, the real proxy on its unix socket, loopback targets only.

The sandbox keeps its own network namespace; the runner's forwarder on 127.0.0.1 leads to the server's proxy,
which serves only RECALLD_ALLOWED_ENDPOINTS (host:port for CONNECT, URL prefix for plain HTTP)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from letta_client import Letta

from recalld.llm.outbound import OutboundPolicy
from recalld.sandbox import ToolSandbox
from recalld.settings import Settings
from tests.servers import TOOL_PYTHON, RecalldServer, server_env

OPERATOR_KEY = "sk-operator-key-never-forwarded"


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.seen.append({"path": self.path, "headers": dict(self.headers.items())})
        body = b"hello from " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _target() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def toolnet_targets():
    allowed, other = _target(), _target()
    yield allowed, other
    for server in (allowed, other):
        server.shutdown()
        server.server_close()


@pytest.fixture
async def toolnet_sandbox(tmp_path, toolnet_targets):
    allowed, _ = toolnet_targets
    port = allowed.server_address[1]
    endpoints = [f"http://127.0.0.1:{port}/allowed", f"https://127.0.0.1:{port}"]
    settings = Settings(
        dir=tmp_path, tool_sandbox="bwrap", tool_timeout_s=15, allowed_endpoints=",".join(endpoints),
        **({"tool_python": TOOL_PYTHON} if TOOL_PYTHON else {}),
    )
    sandbox = ToolSandbox(settings, OutboundPolicy([], settings.allowed_endpoints))
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def _run(sandbox: ToolSandbox, body: str, *, network: bool = True, env: dict | None = None):
    source = "def probe():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
    result = await sandbox.run("org-toolnet", source, "probe", {}, env or {}, network=network)
    assert result.ok, (result.result, result.stderr)
    return result.result


GET_THROUGH_PROXY = """
import urllib.request, urllib.error
try:
    with urllib.request.urlopen({url!r}, timeout=10) as answer:
        return [answer.status, answer.read().decode()]
except urllib.error.HTTPError as e:
    return [e.code, e.read().decode()]
except OSError as e:
    return ["error", type(e).__name__ + ": " + str(e)]
"""

TUNNEL = """
import http.client, os, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
connection = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
connection.set_tunnel("127.0.0.1", {port})
try:
    connection.request("GET", "/through-the-tunnel")
    answer = connection.getresponse()
    return [answer.status, answer.read().decode()]
except OSError as e:
    return ["error", str(e)]
"""


async def test_plain_http_to_an_allowed_prefix_goes_through_with_nothing_added(toolnet_sandbox, toolnet_targets):
    allowed, _ = toolnet_targets
    url = f"http://127.0.0.1:{allowed.server_address[1]}/allowed/page?q=1"
    body = GET_THROUGH_PROXY.format(url=url).replace(
        "urllib.request.urlopen(", "urllib.request.urlopen(urllib.request.Request(", 1
    ).replace(", timeout=10)", ", headers={'Proxy-Authorization': 'Basic eA=='}), timeout=10)", 1)
    status, text = await _run(toolnet_sandbox, body, env={"OPENAI_API_KEY": OPERATOR_KEY})
    assert (status, text) == (200, "hello from /allowed/page?q=1")
    seen = allowed.seen[-1]
    assert seen["path"] == "/allowed/page?q=1"
    names = {k.lower() for k in seen["headers"]}
    assert names <= {"host", "user-agent", "accept-encoding", "connection"}, seen
    assert OPERATOR_KEY not in json.dumps(seen) and "authorization" not in json.dumps(seen).lower()


async def test_connect_to_an_allowed_host_port_tunnels(toolnet_sandbox, toolnet_targets):
    allowed, _ = toolnet_targets
    status, text = await _run(toolnet_sandbox, TUNNEL.format(port=allowed.server_address[1]))
    assert (status, text) == (200, "hello from /through-the-tunnel")
    assert allowed.seen[-1]["path"] == "/through-the-tunnel"


async def test_a_path_outside_the_prefix_and_another_loopback_port_are_403(toolnet_sandbox, toolnet_targets):
    allowed, other = toolnet_targets
    before = (len(allowed.seen), len(other.seen))
    outside = f"http://127.0.0.1:{allowed.server_address[1]}/private"
    status, text = await _run(toolnet_sandbox, GET_THROUGH_PROXY.format(url=outside))
    assert status == 403 and "not under an allowed endpoint" in text
    elsewhere = f"http://127.0.0.1:{other.server_address[1]}/allowed/x"
    status, text = await _run(toolnet_sandbox, GET_THROUGH_PROXY.format(url=elsewhere))
    assert status == 403 and "allowed endpoint" in text
    status, text = await _run(toolnet_sandbox, TUNNEL.format(port=other.server_address[1]))
    assert status == "error" and "403" in text
    assert (len(allowed.seen), len(other.seen)) == before


async def test_a_second_request_on_the_connection_and_a_forged_host_reach_nothing_unchecked(
    toolnet_sandbox, toolnet_targets
):
    allowed, _ = toolnet_targets
    port = allowed.server_address[1]
    before = len(allowed.seen)
    body = f"""
    import os, socket, urllib.parse
    proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    first = "GET http://127.0.0.1:{port}/allowed/one HTTP/1.1\\r\\nHost: evil.example\\r\\n\\r\\n"
    second = "GET http://127.0.0.1:{port}/private HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    s.sendall((first + second).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()
    """
    answer = await _run(toolnet_sandbox, body)
    assert "hello from /allowed/one" in answer and "/private" not in answer
    assert [seen["path"] for seen in allowed.seen[before:]] == ["/allowed/one"]
    assert allowed.seen[-1]["headers"]["Host"] == f"127.0.0.1:{port}"


async def test_a_public_looking_host_that_resolves_to_loopback_is_refused(tmp_path, toolnet_targets):
    _, other = toolnet_targets
    port = other.server_address[1]
    settings = Settings(dir=tmp_path, tool_sandbox="bwrap", tool_timeout_s=15, allowed_endpoints="http://",
                        **({"tool_python": TOOL_PYTHON} if TOOL_PYTHON else {}))
    sandbox = ToolSandbox(settings, OutboundPolicy([], settings.allowed_endpoints))
    await sandbox.start()
    try:
        # "any public host" does not open loopback: the address is checked after resolving
        status, text = await _run(sandbox, GET_THROUGH_PROXY.format(url=f"http://localhost:{port}/"))
        assert status == 403 and "no public address" in text
    finally:
        await sandbox.stop()


async def test_direct_connections_fail_and_without_network_there_is_no_proxy(toolnet_sandbox, toolnet_targets):
    allowed, _ = toolnet_targets
    direct = f"""
    import socket
    try:
        socket.create_connection(("127.0.0.1", {allowed.server_address[1]}), timeout=5)
        return "connected"
    except OSError as e:
        return type(e).__name__
    """
    assert await _run(toolnet_sandbox, direct) == "ConnectionRefusedError"
    assert await _run(toolnet_sandbox, direct, network=False) == "ConnectionRefusedError"
    probe = "import os\nreturn [os.environ.get('HTTP_PROXY'), os.path.exists('/run/recalld-proxy.sock')]"
    assert await _run(toolnet_sandbox, probe, network=False) == [None, False]
    on = await _run(toolnet_sandbox, probe)
    assert on[0].startswith("http://127.0.0.1:") and on[1] is True


# --- a real server: the organization's switch (`recalld orgs set-limits --tool-network on|off`) -------------


@pytest.fixture(scope="module")
def toolnet_server(tmp_path_factory, fake_openai, toolnet_targets):
    allowed, _ = toolnet_targets
    tmp = tmp_path_factory.mktemp("toolnet-server")
    env = server_env(
        tmp, pg_uri=None, openai_base_url=fake_openai.base_url, RECALLD_TOOL_SANDBOX="bwrap",
        RECALLD_ALLOWED_ENDPOINTS=f"http://127.0.0.1:{allowed.server_address[1]}/allowed",
        RECALLD_LIMITS_REFRESH_S="0.2",
    )
    server = RecalldServer(env=env).start(tmp)
    try:
        yield server
    finally:
        server.stop()


def _org_client(server: RecalldServer, name: str, *limits: str) -> Letta:
    key = server.cli("keys", "create", "--org", name).stdout.strip()
    if limits:
        server.cli("orgs", "set-limits", "--org", name, *limits)
    return Letta(base_url=server.url, api_key=key, max_retries=0, timeout=60)


def _tool_answer(client: Letta, body: str) -> list:
    name = f"net_{uuid.uuid4().hex[:10]}"
    code = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    tool = client.tools.create(source_code=f'def {name}():\n    """Fetch."""\n{code}\n')
    agent = client.agents.create(model="openai/gpt-4o-mini", tool_ids=[tool.id])
    reply = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": f"CALL {name} {{}}"}])
    returned = next(m for m in reply.messages if m.message_type == "tool_return_message")
    assert returned.status == "success", returned
    return json.loads(returned.tool_return)


def test_the_organizations_switch_gives_its_tools_the_proxied_network(toolnet_server, toolnet_targets):
    allowed, _ = toolnet_targets
    url = f"http://127.0.0.1:{allowed.server_address[1]}/allowed/from-a-turn"
    body = GET_THROUGH_PROXY.format(url=url)
    on = _org_client(toolnet_server, f"toolnet-on-{uuid.uuid4().hex[:6]}", "--tool-network", "on")
    time.sleep(1.0)  # every instance re-reads the limits within RECALLD_LIMITS_REFRESH_S
    assert _tool_answer(on, body) == [200, "hello from /allowed/from-a-turn"]
    seen = allowed.seen[-1]
    assert seen["path"] == "/allowed/from-a-turn" and "sk-test" not in json.dumps(seen)
    off = _org_client(toolnet_server, f"toolnet-off-{uuid.uuid4().hex[:6]}")  # the default: no network
    before = len(allowed.seen)
    status, text = _tool_answer(off, body)
    assert status == "error" and len(allowed.seen) == before, text
