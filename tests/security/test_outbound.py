"""Outbound calls belong to the operator (contract R20), tried the way a tenant with one organization's key would.

Real `recalld serve` processes (auth required, two organizations' keys), the scripted OpenAI server as the
configured OpenAI provider and the scripted Anthropic server as the configured Anthropic one, each with a key of
its own; capture servers on loopback stand in for the attacker's endpoint (on 127.0.0.1, 127.0.0.2 and ::1) and
for an allowlisted model server. Private, link-local and metadata ranges are tested on the guard itself, with
crafted resolver answers and IP literals: no packet ever leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from letta_client import Letta

from recalld.errors import ProviderError, ProviderTimeout
from recalld.llm.addresses import is_public_address
from recalld.llm.catalog import Provider
from recalld.llm.http import GuardedConnector, NonPublicAddress, ProviderHTTP
from recalld.llm.openai import OpenAIChatClient
from recalld.llm.outbound import AllowedPrefix, OutboundPolicy, parse_endpoint
from recalld.llm.retry import provider_message
from recalld.llm.types import ChatRequest
from recalld.settings import Settings
from tests.fakes.llm_anthropic import ScriptedAnthropic
from tests.fakes.llm_openai import ScriptedOpenAI
from tests.security.capture import INTERNAL_PAGE, CaptureServer
from tests.servers import RecalldServer, server_env

OPENAI_KEY = f"sk-operator-openai-{uuid.uuid4().hex}"
ANTHROPIC_KEY = f"ak-operator-anthropic-{uuid.uuid4().hex}"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = _ipv6_loopback_works()


# --- the guard itself: which addresses, checked where -----------------------------------------------------
NON_PUBLIC = [
    "127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "0.0.0.0", "::",
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "fd12:3456::1", "fc00::1",
    "169.254.169.254", "169.254.1.1", "fe80::1", "fe80::1%eth0", "fd00:ec2::254", "100.100.100.200",
    "224.0.0.1", "239.255.255.250", "ff02::1", "ff05::2", "240.0.0.1", "255.255.255.255", "198.18.0.1",
    "192.0.2.1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1",
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:a9fe:a9fe::1", "2002:7f00:1::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "not-an-address", "",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_pass(address):
    assert is_public_address(address)


class CraftedResolver(aiohttp.abc.AbstractResolver):
    """Answers every lookup from a table, as a DNS server an attacker controls would."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        pass


def _no_socket(addr_info):  # noqa: ANN001, ANN202 - aiohappyeyeballs' socket factory
    raise AssertionError(f"a socket was about to be opened to {addr_info[4]}")


@pytest.fixture
async def outbound_guarded():
    """A guarded connector on crafted DNS answers whose socket factory fails the test: nothing can be sent."""
    resolver = CraftedResolver({
        "metadata.attacker.test": ["169.254.169.254"],
        "rebind.attacker.test": ["10.1.2.3", "fd00:ec2::254"],
        "mixed.attacker.test": ["10.0.0.8", "93.184.216.34", "127.0.0.1"],
        "mapped.attacker.test": ["::ffff:127.0.0.1"],
        "internal.allowed.test": ["10.9.9.9"],
    })
    connector = GuardedConnector(
        trusted_hosts=frozenset({("internal.allowed.test", 8000), ("10.20.30.40", 9000)}),
        resolver=resolver,
        socket_factory=_no_socket,
    )
    yield connector, resolver
    await connector.close()


@pytest.mark.parametrize("host", ["metadata.attacker.test", "rebind.attacker.test", "mapped.attacker.test"])
async def test_guard_refuses_names_that_resolve_to_non_public_addresses(outbound_guarded, host):
    connector, resolver = outbound_guarded
    with pytest.raises(NonPublicAddress):
        await connector._resolve_host(host, 80)
    assert resolver.asked == [host]  # checked on the resolver's answer, the addresses that would be connected to


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "169.254.169.254", "100.100.100.200", "fd00:ec2::254", "::ffff:169.254.169.254",
             "127.0.0.1", "::1", "0.0.0.0", "224.0.0.1", "fe80::1"]
)
async def test_guard_refuses_ip_literals_which_no_resolver_sees(outbound_guarded, host):
    connector, resolver = outbound_guarded
    with pytest.raises(NonPublicAddress):
        await connector._resolve_host(host, 80)
    assert resolver.asked == []


async def test_guard_keeps_only_the_public_answers(outbound_guarded):
    connector, _ = outbound_guarded
    results = await connector._resolve_host("mixed.attacker.test", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_guard_lets_configured_and_allowlisted_hosts_reach_private_addresses(outbound_guarded):
    connector, _ = outbound_guarded
    assert [r["host"] for r in await connector._resolve_host("internal.allowed.test", 8000)] == ["10.9.9.9"]
    assert [r["host"] for r in await connector._resolve_host("10.20.30.40", 9000)] == ["10.20.30.40"]
    # The exact host:port only: another port of the same host is a tenant's guess.
    with pytest.raises(NonPublicAddress):
        await connector._resolve_host("internal.allowed.test", 8001)
    with pytest.raises(NonPublicAddress):
        await connector._resolve_host("10.20.30.40", 22)


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://metadata.attacker.test/computeMetadata/v1/",
            "http://[fd00:ec2::254]/latest/", "http://100.100.100.200/latest/meta-data/"]
)
async def test_a_request_to_a_metadata_service_fails_before_a_socket_exists(outbound_guarded, url):
    connector, _ = outbound_guarded
    async with aiohttp.ClientSession(connector=connector, connector_owner=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(url, allow_redirects=False)
    assert isinstance(info.value.os_error, NonPublicAddress)
    if "attacker" in url:  # what a name resolved to stays out of the message: the internal network's layout
        assert "169.254" not in str(info.value.os_error)


# --- the policy: which endpoint is which provider, which is allowlisted --------------------------------------
PROVIDERS = [
    Provider("openai", "openai", "http://10.0.0.5:8000/v1", "sk-a"),
    Provider("anthropic", "anthropic", "https://api.anthropic.com/v1", "ak-b"),
]


@pytest.mark.parametrize(
    "given", ["http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1/", "HTTP://10.0.0.5:8000/v1", "http://10.0.0.5:8000/x/../v1"]
)
def test_an_endpoint_equal_to_a_base_url_is_that_provider(given):
    route = OutboundPolicy(PROVIDERS).route(given, "llm_config.model_endpoint")
    assert route.provider is PROVIDERS[0]
    assert route.base_url == "http://10.0.0.5:8000/v1"


def test_a_stored_provider_base_url_keeps_its_provider_even_in_a_form_tenants_may_not_write():
    proxy = Provider("openai", "openai", "https://user:pw@llm-proxy.internal/v1", "sk-c")
    policy = OutboundPolicy([proxy])
    assert policy.route(proxy.base_url, "f").provider is proxy
    assert ("llm-proxy.internal", 443) in policy.trusted_hosts
    assert policy.shown(proxy.base_url) is None
    with pytest.raises(Exception, match="credentials"):
        policy.route("https://user:pw@llm-proxy.internal/v1/", "f")


@pytest.mark.parametrize(
    ("entry", "endpoint", "allowed"),
    [
        ("https://", "https://models.example.com/v1", True),
        ("https://", "http://models.example.com/v1", False),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1:8000/v1", True),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1:8000/v1/deployments/x", True),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1:8000/v10", False),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1:8000/v1/../admin", False),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1:8001/v1", False),
        ("http://10.1.1.1:8000/v1", "http://10.1.1.1.evil.test:8000/v1", False),
        ("http://models.internal", "http://models.internal/v1", True),
        ("http://models.internal", "http://models.internal:8080/v1", False),
    ],
)
def test_allowlist_entries_match_whole_origins_and_path_segments(entry, endpoint, allowed):
    policy = OutboundPolicy(PROVIDERS, [entry])
    if allowed:
        assert policy.route(endpoint, "f").provider is None
    else:
        with pytest.raises(Exception, match="f is not allowed"):
            policy.route(endpoint, "f")


def test_a_bare_scheme_entry_does_not_open_other_paths_of_a_named_host():
    policy = OutboundPolicy(PROVIDERS, ["http://", "http://10.1.1.1:8000/v1"])
    assert policy.route("http://models.example.com/v1", "f").provider is None
    for endpoint in ("http://10.1.1.1:8000/admin", "http://10.0.0.5:8000/internal"):
        with pytest.raises(Exception, match="f is not allowed"):
            policy.route(endpoint, "f")


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://2130706433/v1", "dotted-decimal"), ("http://0x7f.1/v1", "dotted-decimal"),
        ("http://127.1/v1", "dotted-decimal"), ("http://user:pw@10.0.0.5:8000/v1", "credentials"),
        ("http://10.0.0.5:8000/v1?x=1", "query"), ("file:///etc/passwd", "http"), ("gopher://h/", "http"),
        ("http://h /v1", "whitespace"), ("http:///v1", "host"), ("x" * 2000, "at most"),
    ],
)
def test_malformed_endpoints_are_refused_saying_why(endpoint, reason):
    with pytest.raises(Exception, match=reason):
        OutboundPolicy(PROVIDERS, ["http://", "https://"]).route(endpoint, "llm_config.model_endpoint")


@pytest.mark.parametrize("entry", ["10.0.0.5:8000", "ftp://x", "http://u:p@h/", "http://h/?q"])
def test_a_malformed_allowlist_entry_stops_start_up(entry):
    with pytest.raises(ValueError, match="RECALLD_ALLOWED_ENDPOINTS"):
        AllowedPrefix.parse(entry)
    with pytest.raises(ValueError, match=f"RECALLD_ALLOWED_ENDPOINTS entry '{re.escape(entry)}'"):
        Settings(RECALLD_ALLOWED_ENDPOINTS=f"https://, {entry}")
    assert Settings(RECALLD_ALLOWED_ENDPOINTS="https://, http://10.0.0.5:8000/v1").allowed_endpoints == [
        "https://", "http://10.0.0.5:8000/v1"
    ]


def test_tenants_see_only_public_or_their_own_allowlisted_endpoints():
    policy = OutboundPolicy(PROVIDERS, ["https://models.example.com/"])
    assert policy.shown("http://10.0.0.5:8000/v1/") is None  # the operator's internal server
    assert policy.shown("https://api.anthropic.com/v1") == "https://api.anthropic.com/v1"
    assert policy.shown("https://models.example.com/v1") == "https://models.example.com/v1"
    assert policy.shown("http://old-internal-host/v1") is None  # a row stored before R20
    assert parse_endpoint("https://API.anthropic.com:443/v1/").url == "https://api.anthropic.com/v1"


# --- end to end: a real server, two organizations, capture servers on loopback ------------------------------
@pytest.fixture(scope="module")
def outbound_providers() -> Iterator[tuple[ScriptedOpenAI, ScriptedAnthropic]]:
    with ScriptedOpenAI(models=(OPENAI_MODEL, "text-embedding-3-small"), api_key=OPENAI_KEY) as openai, \
            ScriptedAnthropic(models=(ANTHROPIC_MODEL,), api_key=ANTHROPIC_KEY) as anthropic:
        yield openai, anthropic


@pytest.fixture(scope="module")
def outbound_attacker() -> Iterator[CaptureServer]:
    hosts = ("127.0.0.1", "127.0.0.2", "::1") if IPV6 else ("127.0.0.1", "127.0.0.2")
    with CaptureServer(hosts) as capture:
        yield capture


@pytest.fixture(scope="module")
def outbound_allowed(outbound_attacker) -> Iterator[CaptureServer]:
    """An allowlisted model server; its /redirect path sends clients on to the attacker."""
    with CaptureServer(redirect_to=outbound_attacker.url()) as capture:
        yield capture


def _start(tmp_dir: Path, providers, **extra: str) -> RecalldServer:
    openai, anthropic = providers
    env = server_env(
        tmp_dir,
        pg_uri=None,
        openai_base_url=openai.base_url,
        OPENAI_API_KEY=OPENAI_KEY,
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=anthropic.base_url,
        RECALLD_AUTH="required",
        RECALLD_LLM_TIMEOUT="5",
        RECALLD_LLM_MAX_RETRIES="0",
        **extra,
    )
    server = RecalldServer(env=env).start(tmp_dir)
    server.tmp_dir = tmp_dir
    server.keys = {org: server.cli("keys", "create", "--org", org).stdout.strip() for org in ("org-a", "org-b")}
    return server


@pytest.fixture(scope="module")
def outbound_strict(tmp_path_factory, outbound_providers) -> Iterator[RecalldServer]:
    """The default: no allowlist."""
    server = _start(tmp_path_factory.mktemp("outbound-strict"), outbound_providers)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def outbound_open(tmp_path_factory, outbound_providers, outbound_allowed) -> Iterator[RecalldServer]:
    """An allowlist naming the allowed capture server's paths, plus any public http:// host."""
    base = outbound_allowed.url()
    allowed = ",".join(f"{base}/{p}" for p in ("ok", "err", "html", "sse-err", "redirect")) + ",http://"
    server = _start(tmp_path_factory.mktemp("outbound-open"), outbound_providers, RECALLD_ALLOWED_ENDPOINTS=allowed)
    try:
        yield server
    finally:
        server.stop()


def _http(server: RecalldServer, org: str = "org-a") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys[org]}"}, timeout=30)


def _sdk(server: RecalldServer, org: str = "org-a") -> Letta:
    return Letta(base_url=server.url, api_key=server.keys[org], max_retries=0, timeout=30)


def _leaks(capture: CaptureServer) -> list[str]:
    """Every place an operator key reached the capture server: any header, any body."""
    found = []
    for request in capture.requests:
        for name, value in request["headers"].items():
            if OPENAI_KEY in value or ANTHROPIC_KEY in value or "operator" in value:
                found.append(f"{request['path']} header {name}")
        if OPENAI_KEY.encode() in request["body"] or ANTHROPIC_KEY.encode() in request["body"]:
            found.append(f"{request['path']} body")
    return found


def _llm_config(endpoint: str, endpoint_type: str = "openai", provider_name: str | None = None,
                handle: str | None = None) -> dict:
    config = {"model": OPENAI_MODEL, "model_endpoint_type": endpoint_type, "model_endpoint": endpoint,
              "context_window": 8192}
    if provider_name is not None:
        config["provider_name"] = provider_name
    if handle is not None:
        config["handle"] = handle
    return config


def _embedding_config(endpoint: str, endpoint_type: str = "openai") -> dict:
    return {"embedding_endpoint_type": endpoint_type, "embedding_endpoint": endpoint,
            "embedding_model": "text-embedding-3-small", "embedding_dim": 1536}


# Every way a tenant could try to make an endpoint of its own "be" a provider with a key.
VARIATIONS = [
    pytest.param(endpoint_type, provider_name, handle, provider_type,
                 id=f"{endpoint_type}-{provider_name}-{handle}-{provider_type}")
    for endpoint_type, provider_name, handle, provider_type in [
        ("openai", None, None, None),
        ("openai", "openai", "openai/gpt-4o-mini", "openai"),
        ("openai", "anthropic", "anthropic/claude-3-5-haiku-20241022", "anthropic"),
        ("anthropic", None, None, None),
        ("anthropic", "anthropic", "anthropic/claude-3-5-haiku-20241022", "anthropic"),
        ("anthropic", "openai", "openai/gpt-4o-mini", "openai"),
        ("openai-proxy", "openai-proxy", None, None),
        ("vllm", "vllm", "vllm/x", "vllm"),
        ("ollama", "ollama", None, "ollama"),
    ]
]


def _create_body(endpoint: str, endpoint_type: str, provider_name: str | None, handle: str | None,
                 provider_type: str | None) -> dict:
    body: dict = {"llm_config": _llm_config(endpoint, endpoint_type, provider_name, handle),
                  "embedding": "local/all-minilm-l6-v2"}
    if provider_type is not None:
        body["model_settings"] = {"provider_type": provider_type}
    return body


def _agent_count(client: httpx.Client) -> int:
    return len(client.get("/v1/agents/", params={"limit": 1000}).json())


@pytest.mark.parametrize(("endpoint_type", "provider_name", "handle", "provider_type"), VARIATIONS)
def test_a_tenant_endpoint_is_400_on_create_and_nothing_is_stored(
    outbound_strict, outbound_attacker, endpoint_type, provider_name, handle, provider_type
):
    outbound_attacker.reset()
    with _http(outbound_strict) as client:
        before = _agent_count(client)
        body = _create_body(f"{outbound_attacker.url()}/v1", endpoint_type, provider_name, handle, provider_type)
        answer = client.post("/v1/agents/", json=body)
        assert answer.status_code == 400, answer.text
        assert "llm_config.model_endpoint" in answer.json()["detail"]
        assert _agent_count(client) == before
    assert outbound_attacker.requests == []


@pytest.mark.parametrize(
    "endpoint",
    ["https://api.openai.com.attacker.test/v1", "http://169.254.169.254/latest", "http://[::1]:1/v1",
     "http://2130706433/v1", "file:///etc/passwd"],
)
def test_any_endpoint_not_configured_or_allowlisted_is_400(outbound_strict, endpoint):
    with _http(outbound_strict) as client:
        answer = client.post("/v1/agents/", json={"llm_config": _llm_config(endpoint)})
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith("INVALID_ARGUMENT: llm_config.model_endpoint")


def test_a_tenant_endpoint_is_400_on_patch_and_the_agent_is_unchanged(outbound_strict, outbound_attacker):
    outbound_attacker.reset()
    attacker = f"{outbound_attacker.url()}/v1"
    with _http(outbound_strict) as client:
        agent = client.post("/v1/agents/", json={"model": f"openai/{OPENAI_MODEL}"}).json()
        for change in (
            {"llm_config": _llm_config(attacker, "anthropic", "anthropic")},
            {"llm_config": _llm_config(attacker)},
            {"embedding_config": _embedding_config(attacker)},
        ):
            answer = client.patch(f"/v1/agents/{agent['id']}", json=change)
            assert answer.status_code == 400, answer.text
            assert next(iter(change)) + "." in answer.json()["detail"]
        after = client.get(f"/v1/agents/{agent['id']}").json()
    assert after["llm_config"] == agent["llm_config"]
    assert after["embedding_config"] == agent["embedding_config"]
    assert outbound_attacker.requests == []


def test_a_tenant_embedding_endpoint_is_400_on_create_and_on_archives(outbound_strict, outbound_attacker):
    attacker = f"{outbound_attacker.url()}/v1"
    with _http(outbound_strict) as client:
        before = _agent_count(client)
        archives_before = len(client.get("/v1/archives/").json())
        answer = client.post("/v1/agents/", json={"model": f"openai/{OPENAI_MODEL}",
                                                  "embedding_config": _embedding_config(attacker)})
        assert answer.status_code == 400, answer.text
        assert "embedding_config.embedding_endpoint" in answer.json()["detail"]
        answer = client.post("/v1/archives/", json={"name": "a", "embedding_config": _embedding_config(attacker)})
        assert answer.status_code == 400, answer.text
        assert "embedding_config.embedding_endpoint" in answer.json()["detail"]
        assert _agent_count(client) == before
        assert len(client.get("/v1/archives/").json()) == archives_before
    assert outbound_attacker.requests == []


def test_a_configured_base_url_is_that_provider_whatever_the_names_say(outbound_strict, outbound_providers):
    openai, anthropic = outbound_providers
    sdk = _sdk(outbound_strict)
    # The endpoint is the Anthropic provider's: its protocol and key, though every name says OpenAI.
    config = {**_llm_config(anthropic.base_url + "/", "openai", "openai", "openai/gpt-4o-mini"),
              "model": ANTHROPIC_MODEL}
    agent = sdk.agents.create(llm_config=config, embedding="local/all-minilm-l6-v2")
    assert agent.llm_config.api_model_endpoint is None  # the operator's base URL is not shown
    openai_calls, anthropic_calls = len(openai.requests), len(anthropic.requests)
    reply = sdk.agents.messages.create(agent.id, messages=[{"role": "user", "content": "hello"}])
    assert any("ack hello" in str(getattr(m, "content", "")) for m in reply.messages)
    assert len(openai.requests) == openai_calls
    assert len(anthropic.requests) == anthropic_calls + 1  # it wants the Anthropic key, and got it
    with _http(outbound_strict) as client:
        steps = client.get("/v1/steps/", params={"agent_id": agent.id}).json()
    assert steps and all(step["model_endpoint"] is None for step in steps)


def test_models_and_agents_do_not_show_the_operators_base_urls(outbound_strict, outbound_providers):
    openai, anthropic = outbound_providers
    sdk = _sdk(outbound_strict, "org-b")
    models = sdk.models.list()
    assert {m.handle for m in models} >= {f"openai/{OPENAI_MODEL}", f"anthropic/{ANTHROPIC_MODEL}"}
    assert all(m.model_endpoint is None for m in models)
    assert all(m.embedding_endpoint is None for m in sdk.models.embeddings.list())
    agent = sdk.agents.create(model=f"openai/{OPENAI_MODEL}", embedding="openai/text-embedding-3-small")
    with _http(outbound_strict, "org-b") as client:
        text = client.get(f"/v1/agents/{agent.id}").text + client.get("/v1/models/").text
    assert openai.base_url not in text and anthropic.base_url not in text
    assert f"127.0.0.1:{openai.base_url.split(':')[-1]}" not in text


def _db_update(server: RecalldServer, agent_id: str, column: str, key: str, value: str) -> None:
    """Write a row as an older recalld would have stored it (no endpoint check then)."""
    with sqlite3.connect(server.tmp_dir / "recalld.db") as db:
        db.execute(f"UPDATE agents SET {column} = json_set({column}, '$.{key}', ?) WHERE id = ?", (value, agent_id))


def test_a_stored_row_with_a_foreign_endpoint_fails_the_turn_and_sends_nothing(outbound_strict, outbound_attacker):
    outbound_attacker.reset()
    sdk = _sdk(outbound_strict)
    agent = sdk.agents.create(model=f"openai/{OPENAI_MODEL}", embedding="openai/text-embedding-3-small")
    _db_update(outbound_strict, agent.id, "llm_config", "model_endpoint", f"{outbound_attacker.url()}/v1")
    with _http(outbound_strict) as client:
        answer = client.post(f"/v1/agents/{agent.id}/messages", json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 400, answer.text
        assert "llm_config.model_endpoint is not allowed" in answer.json()["detail"]
        shown = client.get(f"/v1/agents/{agent.id}").json()["llm_config"]["model_endpoint"]
        assert shown is None
        _db_update(outbound_strict, agent.id, "embedding_config", "embedding_endpoint", f"{outbound_attacker.url()}/v1")
        answer = client.post(f"/v1/agents/{agent.id}/archival-memory", json={"text": "a fact"})
        assert answer.status_code == 400, answer.text
        assert "embedding_config.embedding_endpoint is not allowed" in answer.json()["detail"]
    assert outbound_attacker.requests == []


# --- end to end with an allowlist ---------------------------------------------------------------------------
@pytest.mark.parametrize(("endpoint_type", "provider_name", "handle", "provider_type"), VARIATIONS)
def test_an_allowlisted_endpoint_gets_the_turn_but_no_key(
    outbound_open, outbound_allowed, endpoint_type, provider_name, handle, provider_type
):
    outbound_allowed.reset()
    endpoint = f"{outbound_allowed.url()}/ok/v1"
    with _http(outbound_open) as client:
        answer = client.post("/v1/agents/", json=_create_body(endpoint, endpoint_type, provider_name, handle,
                                                              provider_type))
        assert answer.status_code == 200, answer.text
        agent = answer.json()
        assert agent["llm_config"]["model_endpoint"] == endpoint  # the tenant's own endpoint reads back as set
        sent = client.post(f"/v1/agents/{agent['id']}/messages",
                           json={"messages": [{"role": "user", "content": "hello"}]})
        assert sent.status_code == 200, sent.text
        assert "captured reply" in sent.text
        streamed = client.post(f"/v1/agents/{agent['id']}/messages/stream",
                               json={"messages": [{"role": "user", "content": "again"}], "stream_tokens": True})
        assert streamed.status_code == 200, streamed.text
        assert "captured" in streamed.text
    paths = {r["path"] for r in outbound_allowed.requests}
    expected = "/ok/v1/messages" if endpoint_type == "anthropic" else "/ok/v1/chat/completions"
    assert paths == {expected}
    assert _leaks(outbound_allowed) == []


def test_an_allowlisted_endpoint_set_by_patch_gets_no_key(outbound_open, outbound_allowed):
    outbound_allowed.reset()
    sdk = _sdk(outbound_open, "org-b")
    agent = sdk.agents.create(model=f"anthropic/{ANTHROPIC_MODEL}", embedding="local/all-minilm-l6-v2")
    for endpoint_type, provider_name in (("anthropic", "anthropic"), ("openai", "openai")):
        config = {**_llm_config(f"{outbound_allowed.url()}/ok/v1", endpoint_type, provider_name),
                  "model": ANTHROPIC_MODEL}
        updated = sdk.agents.update(agent.id, llm_config=config)
        assert updated.llm_config.api_model_endpoint == f"{outbound_allowed.url()}/ok/v1"
        reply = sdk.agents.messages.create(agent.id, messages=[{"role": "user", "content": "hi"}])
        assert any("captured reply" in str(getattr(m, "content", "")) for m in reply.messages)
    assert len(outbound_allowed.requests) == 2
    assert _leaks(outbound_allowed) == []


def test_an_allowlisted_embedding_endpoint_gets_no_key(outbound_open, outbound_allowed):
    outbound_allowed.reset()
    endpoint = f"{outbound_allowed.url()}/ok/v1"
    with _http(outbound_open) as client:
        agent = client.post("/v1/agents/", json={"model": f"openai/{OPENAI_MODEL}",
                                                 "embedding_config": _embedding_config(endpoint)}).json()
        assert agent["embedding_config"]["embedding_endpoint"] == endpoint
        answer = client.post(f"/v1/agents/{agent['id']}/archival-memory", json={"text": "the sky is green"})
        assert answer.status_code == 200, answer.text
        archive = client.post("/v1/archives/", json={"name": "shared", "embedding_config": _embedding_config(endpoint)})
        assert archive.status_code == 200, archive.text
    assert [r["path"] for r in outbound_allowed.requests] == ["/ok/v1/embeddings"]
    assert _leaks(outbound_allowed) == []


LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.2", "localhost", "[::ffff:127.0.0.1]"] + (["[::1]"] if IPV6 else [])


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_ssrf_to_loopback_is_refused_at_connect_time(outbound_open, outbound_attacker, host):
    outbound_attacker.reset()
    endpoint = f"http://{host}:{outbound_attacker.port}/v1"
    with _http(outbound_open) as client:
        # Allowed by the bare "http://" entry, which means public hosts only: refused when connecting.
        agent = client.post("/v1/agents/", json={"llm_config": _llm_config(endpoint),
                                                 "embedding_config": _embedding_config(endpoint)})
        assert agent.status_code == 200, agent.text
        agent_id = agent.json()["id"]
        answer = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": "x"}]})
        assert answer.status_code == 400, answer.text
        assert "resolves to no public address" in answer.json()["detail"]
        assert answer.headers.get("x-should-retry") == "false"
        answer = client.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": "a fact"})
        assert answer.status_code == 400, answer.text
        assert "resolves to no public address" in answer.json()["detail"]
        streamed = client.post(f"/v1/agents/{agent_id}/messages/stream",
                               json={"messages": [{"role": "user", "content": "x"}], "stream_tokens": True})
        assert "resolves to no public address" in streamed.text
    assert outbound_attacker.requests == []


def test_a_redirect_to_loopback_is_not_followed(outbound_open, outbound_allowed, outbound_attacker):
    outbound_allowed.reset()
    outbound_attacker.reset()
    endpoint = f"{outbound_allowed.url()}/redirect/v1"
    with _http(outbound_open) as client:
        agent = client.post("/v1/agents/", json={"llm_config": _llm_config(endpoint),
                                                 "embedding_config": _embedding_config(endpoint)}).json()
        answer = client.post(f"/v1/agents/{agent['id']}/messages",
                             json={"messages": [{"role": "user", "content": "x"}]})
        assert answer.status_code == 502, answer.text
        assert answer.json()["detail"] == "allowlisted endpoint returned 307: redirects are not followed"
        answer = client.post(f"/v1/agents/{agent['id']}/archival-memory", json={"text": "a fact"})
        assert answer.status_code == 502, answer.text
    assert len(outbound_allowed.requests) == 2
    assert outbound_attacker.requests == []


@pytest.mark.parametrize("path", ["err", "html", "sse-err"])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_bodies_never_appear_in_errors(outbound_open, outbound_allowed, path, stream):
    endpoint = f"{outbound_allowed.url()}/{path}/v1"
    with _http(outbound_open) as client:
        agent = client.post("/v1/agents/", json={"llm_config": _llm_config(endpoint),
                                                 "embedding_config": _embedding_config(endpoint)}).json()
        route = "messages/stream" if stream else "messages"
        answer = client.post(f"/v1/agents/{agent['id']}/{route}",
                             json={"messages": [{"role": "user", "content": "x"}]})
        archival = client.post(f"/v1/agents/{agent['id']}/archival-memory", json={"text": "a fact"})
        runs = client.get("/v1/runs/", params={"agent_id": agent["id"]}).text
    for text in (answer.text, archival.text, runs):
        assert "hunter2" not in text and INTERNAL_PAGE not in text
    assert archival.status_code == 502
    if not stream:
        assert answer.status_code == 502, answer.text
        assert answer.json()["detail"].startswith("allowlisted endpoint ")


def test_a_configured_providers_error_reason_is_short_and_clean(outbound_open):
    sdk = _sdk(outbound_open)
    agent = sdk.agents.create(model=f"openai/{OPENAI_MODEL}", embedding="local/all-minilm-l6-v2")
    with _http(outbound_open) as client:
        answer = client.post(f"/v1/agents/{agent.id}/messages",
                             json={"messages": [{"role": "user", "content": "FAIL 400"}]})
    assert answer.status_code == 502
    assert answer.json()["detail"] == "openai returned 400: scripted failure 400"


def test_a_providers_reason_loses_control_characters_and_length():
    body = b'{"error": {"message": "bad\\r\\nX-Injected: 1\\u001b[31m ' + b"y" * 500 + b'"}}'
    reason = provider_message(body)
    assert "\r" not in reason and "\n" not in reason and "\x1b" not in reason
    assert reason.startswith("bad X-Injected: 1 [31m y") and len(reason) == 200
    assert provider_message(b"<html>" + INTERNAL_PAGE.encode() + b"</html>") == ""
    assert provider_message(b'{"detail": "' + INTERNAL_PAGE.encode() + b'"}') == ""


# --- every call bounded: total time, answer size --------------------------------------------------------------
@pytest.fixture
async def outbound_dripping() -> AsyncIterator[str]:
    """A loopback server whose answers never end (a byte every 50 ms, so no read timeout fires) or are huge."""

    async def drip(request: web.Request) -> web.StreamResponse:
        is_stream = (await request.json()).get("stream")
        content_type = "text/event-stream" if is_stream else "application/json"
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(2000):  # 100 s at most, whatever the client does
                await response.write(b": still here\n" if is_stream else b" ")
                await asyncio.sleep(0.05)
        return response

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b" " * (3 * 1024 * 1024), content_type="application/json")

    app = web.Application()
    app.router.add_post("/drip/v1/chat/completions", drip)
    app.router.add_post("/huge/v1/chat/completions", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _bounded_client(http: ProviderHTTP, base_url: str) -> OpenAIChatClient:
    return OpenAIChatClient(http, provider_name="allowlisted endpoint", base_url=base_url, api_key=None,
                            timeout_s=5, max_retries=0, trusted=False, total_timeout_s=1.0, stream_timeout_s=1.5,
                            max_response_bytes=1024 * 1024)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_that_never_ends_is_cut_at_its_total_bound(outbound_dripping, stream):
    http = ProviderHTTP(trusted_hosts=[("127.0.0.1", int(outbound_dripping.rsplit(":", 1)[1]))])
    client = _bounded_client(http, f"{outbound_dripping}/drip/v1")
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeout):
            if stream:
                async for _ in client.stream(request):
                    pass
            else:
                await asyncio.wait_for(client.complete(request), 30)
    finally:
        await http.aclose()
    assert time.monotonic() - started < (1.5 if stream else 1.0) + 2.0


async def test_an_answer_over_the_size_limit_fails_the_call(outbound_dripping):
    http = ProviderHTTP(trusted_hosts=[("127.0.0.1", int(outbound_dripping.rsplit(":", 1)[1]))])
    client = _bounded_client(http, f"{outbound_dripping}/huge/v1")
    try:
        with pytest.raises(ProviderError, match="over the 1048576-byte limit"):
            await client.complete(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
    finally:
        await http.aclose()
