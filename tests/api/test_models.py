"""Models and health through the SDK against a running server (contract 1.8, 7.3, rules R1–R3, R19)."""

from __future__ import annotations

import httpx
import pytest

# The keys of an observed `GET /v1/models/` item (contract 7.3).
LLM_MODEL_FIELDS = {
    "handle",
    "name",
    "display_name",
    "provider_type",
    "provider_name",
    "model_type",
    "model",
    "model_endpoint_type",
    "model_endpoint",
    "provider_category",
    "model_wrapper",
    "context_window",
    "put_inner_thoughts_in_kwargs",
    "temperature",
    "max_tokens",
    "enable_reasoner",
    "reasoning_effort",
    "max_reasoning_tokens",
    "effort",
    "frequency_penalty",
    "compatibility_type",
    "verbosity",
    "tier",
    "parallel_tool_calls",
    "response_format",
    "strict",
    "return_logprobs",
    "top_logprobs",
    "return_token_ids",
    "tool_call_parser",
    "max_context_window",
}
EMBEDDING_MODEL_FIELDS = {
    "handle",
    "name",
    "display_name",
    "provider_type",
    "provider_name",
    "model_type",
    "embedding_endpoint_type",
    "embedding_endpoint",
    "embedding_model",
    "embedding_dim",
    "embedding_chunk_size",
    "batch_size",
    "azure_endpoint",
    "azure_version",
    "azure_deployment",
}
# The scripted server lists gpt-4o-mini, gpt-4o and text-embedding-3-small (tests/conftest.py).
CHAT_HANDLES = {"openai/gpt-4o-mini", "openai/gpt-4o"}
OPENAI_EMBEDDINGS = {
    "openai/text-embedding-ada-002": 1536,
    "openai/text-embedding-3-small": 1536,
    "openai/text-embedding-3-large": 3072,
}


def raw_get(server, path: str, **kw) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kw)


# --- chat models --------------------------------------------------------------------------------------


def test_models_list_has_scripted_chat_models_as_openai_handles(client):
    assert {m.handle for m in client.models.list()} == CHAT_HANDLES


def test_models_list_leaves_out_embedding_ids(client):
    assert not any("embedding" in m.handle or "embedding" in m.model for m in client.models.list())


def test_model_item_describes_the_provider(client, fake_openai):
    (mini,) = [m for m in client.models.list() if m.handle == "openai/gpt-4o-mini"]
    assert (mini.model, mini.name, mini.display_name) == ("gpt-4o-mini",) * 3
    assert (mini.provider_type, mini.provider_name, mini.model_endpoint_type) == ("openai",) * 3
    assert mini.model_endpoint is None  # the operator's base URL is not shown to tenants (R20)
    assert mini.provider_category == "base"
    assert mini.model_type == "llm"
    assert mini.context_window == mini.max_context_window == 128_000


def test_model_item_json_has_every_field(server):
    items = raw_get(server, "/v1/models/").json()
    assert items
    for item in items:
        assert LLM_MODEL_FIELDS <= set(item), LLM_MODEL_FIELDS - set(item)


def test_models_list_filters_by_provider_name(client):
    assert {m.handle for m in client.models.list(provider_name="openai")} == CHAT_HANDLES


@pytest.mark.parametrize("provider", ["anthropic", "letta", "nope"])
def test_models_list_of_unconfigured_provider_name_is_empty(client, provider):
    assert list(client.models.list(provider_name=provider)) == []


def test_models_list_filters_by_provider_type(client):
    assert {m.handle for m in client.models.list(provider_type="openai")} == CHAT_HANDLES
    assert list(client.models.list(provider_type="anthropic")) == []


def test_models_list_filters_by_provider_category(client):
    assert {m.handle for m in client.models.list(provider_category=["base"])} == CHAT_HANDLES
    assert {m.handle for m in client.models.list(provider_category=["base", "byok"])} == CHAT_HANDLES
    assert list(client.models.list(provider_category=["byok"])) == []


def test_models_list_without_slash_redirects(server):
    resp = raw_get(server, "/v1/models")
    assert resp.status_code == 307
    assert resp.headers["location"].endswith("/v1/models/")


# --- embedding models ---------------------------------------------------------------------------------


def test_embedding_models_include_local_model(client):
    by_handle = {m.handle: m for m in client.models.embeddings.list()}
    local = by_handle["local/all-minilm-l6-v2"]
    assert local.embedding_dim == 384
    assert local.model_type == "embedding"


def test_embedding_models_include_openai_handles(client, fake_openai):
    by_handle = {m.handle: m for m in client.models.embeddings.list()}
    assert {h: by_handle[h].embedding_dim for h in OPENAI_EMBEDDINGS if h in by_handle} == OPENAI_EMBEDDINGS
    for handle in OPENAI_EMBEDDINGS:
        item = by_handle[handle]
        assert item.embedding_model == handle.removeprefix("openai/")
        assert (item.provider_type, item.provider_name, item.embedding_endpoint_type) == ("openai",) * 3
        assert item.embedding_endpoint is None  # the operator's base URL is not shown to tenants (R20)


def test_embedding_models_are_only_the_local_and_openai_ones(client):
    handles = [m.handle for m in client.models.embeddings.list()]
    assert sorted(handles) == sorted([*OPENAI_EMBEDDINGS, "local/all-minilm-l6-v2"])


def test_embedding_model_json_has_every_field(server):
    items = raw_get(server, "/v1/models/embedding").json()
    assert items
    for item in items:
        assert EMBEDDING_MODEL_FIELDS <= set(item), EMBEDDING_MODEL_FIELDS - set(item)


def test_embedding_handles_are_not_chat_models(client):
    chat = {m.handle for m in client.models.list()}
    assert not chat & {m.handle for m in client.models.embeddings.list()}


# --- health -------------------------------------------------------------------------------------------


def test_health_reports_letta_version_and_ok(client):
    health = client.health()
    assert health.version == "0.16.8"
    assert health.status == "ok"


def test_health_adds_recalld_version(server):
    body = raw_get(server, "/v1/health/").json()
    assert body["version"] == "0.16.8"
    assert isinstance(body["recalld_version"], str) and body["recalld_version"]


def test_health_without_slash_redirects_to_slash_form(server):
    resp = raw_get(server, "/v1/health")
    assert resp.status_code == 307
    assert resp.headers["location"].endswith("/v1/health/")
    followed = raw_get(server, "/v1/health", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["status"] == "ok"
