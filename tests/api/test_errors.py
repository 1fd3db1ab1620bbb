"""Bad input gets a clear 4xx with a JSON message and changes nothing (contract R5, R16, R18)."""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from letta_client import AuthenticationError, Letta

MODEL = "openai/gpt-4o-mini"


def post_raw(server, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )


def agent_count(server) -> int:
    return httpx.get(f"{server.url}/v1/agents/count", timeout=10).json()


def test_body_that_is_not_json_is_422(server):
    r = post_raw(server, "/v1/agents/", b"{not json")
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)


def test_wrong_json_type_is_422_without_coercion(server):
    before = agent_count(server)
    r = httpx.post(f"{server.url}/v1/agents/", json={"model": MODEL, "name": 5}, timeout=10)
    assert r.status_code == 422
    assert "name" in r.json()["detail"]
    assert agent_count(server) == before


def test_type_errors_come_before_semantic_checks(server):
    # No model (a 400 on its own) and a wrongly typed field: the type error wins.
    r = httpx.post(f"{server.url}/v1/agents/", json={"tags": "not-a-list"}, timeout=10)
    assert r.status_code == 422


@pytest.mark.parametrize("name", ["a\u0000b", "", "x" * 513])
def test_odd_agent_names_are_422(server, name):
    before = agent_count(server)
    r = httpx.post(f"{server.url}/v1/agents/", json={"model": MODEL, "name": name}, timeout=10)
    assert r.status_code == 422
    assert agent_count(server) == before


def test_lone_surrogate_is_422_not_500(server):
    body = b'{"model": "' + MODEL.encode() + b'", "name": "bad \\ud800 name"}'
    r = post_raw(server, "/v1/agents/", body)
    assert r.status_code == 422
    r = post_raw(server, "/v1/blocks/", b'{"label": "l", "value": "\\udfff"}')
    assert r.status_code == 422


def test_nul_byte_in_query_is_422(server):
    r = httpx.get(f"{server.url}/v1/agents/", params={"name": "a\x00b"}, timeout=10)
    assert r.status_code == 422


def test_huge_integer_in_filter_is_not_500(server):
    r = httpx.get(
        f"{server.url}/v1/blocks/", params={"connected_to_agents_count_gt": str(10**30)}, timeout=10
    )
    assert r.status_code in (200, 422)
    r = httpx.get(f"{server.url}/v1/agents/", params={"limit": str(10**30)}, timeout=10)
    assert r.status_code == 200


def test_negative_limit_is_422(server):
    r = httpx.get(f"{server.url}/v1/tools/", params={"limit": "-1"}, timeout=10)
    assert r.status_code == 422
    r = httpx.get(f"{server.url}/v1/tools/", params={"limit": "abc"}, timeout=10)
    assert r.status_code == 422


def test_oversized_body_is_413(server):
    body = json.dumps({"label": "big", "value": "x" * (9 * 1024 * 1024)}).encode()
    r = post_raw(server, "/v1/blocks/", body)
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]


def test_unknown_route_is_json_404(server):
    r = httpx.get(f"{server.url}/v1/nope", timeout=10)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_wrong_method_is_json_405(server):
    r = httpx.put(f"{server.url}/v1/health/", timeout=10)
    assert r.status_code == 405
    assert "detail" in r.json()


def test_unsupported_letta_feature_is_501_naming_it(server):
    r = httpx.get(f"{server.url}/v1/identities/", timeout=10)
    assert r.status_code == 501
    assert "identities" in r.json()["detail"]


def test_input_errors_tell_the_sdk_not_to_retry(server):
    r = httpx.get(f"{server.url}/v1/agents/agent-{uuid.uuid4()}", timeout=10)
    assert r.status_code == 404
    assert r.headers["x-should-retry"] == "false"


def test_malformed_user_id_header_is_400(server):
    r = httpx.get(f"{server.url}/v1/agents/", headers={"user_id": "bogus"}, timeout=10)
    assert r.status_code == 400


def test_unknown_api_key_is_401_even_with_auth_off(server):
    bad = Letta(base_url=server.url, api_key="rk-00000000-0000-4000-8000-000000000000.nope", max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.agents.list()
    # A bearer that is not a recalld key is a Letta client's placeholder: the default organization (R18).
    placeholder = Letta(base_url=server.url, api_key="not-a-key", max_retries=0)
    assert isinstance(placeholder.agents.list().items, list)


def test_revoked_key_is_401(server):
    created = server.cli("keys", "create", "--org", "revoke-org")
    key = created.stdout.strip()
    key_id = next(line.split(": ", 1)[1] for line in created.stderr.splitlines() if line.startswith("key id"))
    server.cli("keys", "revoke", "--org", "revoke-org", key_id)
    with pytest.raises(AuthenticationError):
        Letta(base_url=server.url, api_key=key, max_retries=0).agents.list()
    fresh = server.cli("keys", "create", "--org", "revoke-org").stdout.strip()
    assert Letta(base_url=server.url, api_key=fresh, max_retries=0).agents.list().items == []


def test_errors_never_leak_tracebacks(server):
    for r in (
        post_raw(server, "/v1/agents/", b"[1, 2"),
        httpx.post(f"{server.url}/v1/tools/", json={"source_code": "def f(:"}, timeout=10),
        httpx.get(f"{server.url}/v1/agents/agent-x", timeout=10),
    ):
        assert r.status_code < 500
        assert "Traceback" not in r.text and 'File "' not in r.text


@pytest.mark.parametrize("request_line", [
    b"GET /v1/agents/?name=" + b"a" * 70_000 + b" HTTP/1.1",  # over the HTTP parser's 64 KiB for a URL
    b"GET /v1/agents/ HTTP/1.1 trailing-garbage",
], ids=["url-over-64KiB", "malformed-request-line"])
def test_a_request_the_http_parser_refuses_gets_a_json_400(server, request_line):
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port)) as s:
        s.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert "could not be parsed" in json.loads(body)["detail"]
    assert httpx.get(f"{server.url}/v1/health/", timeout=10).status_code == 200  # the server carries on
