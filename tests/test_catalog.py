"""ModelCatalog against scripted providers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from letta_client.types import EmbeddingConfig, EmbeddingModel, LlmConfig, Model

from recalld.errors import InvalidInput, NotFound
from recalld.llm.catalog import (
    DEFAULT_CONTEXT_WINDOW,
    ModelCatalog,
    Provider,
    context_window_for,
    normalize_embedding_config,
    normalize_llm_config,
)
from recalld.llm.http import ProviderHTTP
from recalld.settings import Settings
from tests.fakes.llm_anthropic import ScriptedAnthropic
from tests.fakes.llm_openai import ScriptedOpenAI
from tests.servers import free_port

# The key order of a `GET /v1/models/` item as Letta sends it.
LLM_ITEM_KEYS = [
    "handle", "name", "display_name", "provider_type", "provider_name", "model_type", "model",
    "model_endpoint_type", "model_endpoint", "provider_category", "model_wrapper", "context_window",
    "put_inner_thoughts_in_kwargs", "temperature", "max_tokens", "enable_reasoner", "reasoning_effort",
    "max_reasoning_tokens", "effort", "frequency_penalty", "compatibility_type", "verbosity", "tier",
    "parallel_tool_calls", "response_format", "strict", "return_logprobs", "top_logprobs", "return_token_ids",
    "tool_call_parser", "max_context_window",
]  # fmt: skip


def make_settings(**providers: str | None) -> Settings:
    """Settings with only the given providers, whatever the environment of the test run holds."""
    fields: dict[str, str | None] = {
        "openai_api_key": None,
        "openai_base_url": None,
        "anthropic_api_key": None,
        "ollama_base_url": None,
        "vllm_api_base": None,
    }
    fields.update(providers)
    return Settings(_env_file=None, **fields)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture
def openai_fake() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(models=("gpt-4o-mini", "gpt-4.1", "text-embedding-3-small")) as fake:
        yield fake


# The session opens on first use, in the loop the test runs on; it is closed in that loop too.
@pytest_asyncio.fixture
async def http() -> AsyncIterator[ProviderHTTP]:
    http = ProviderHTTP()
    yield http
    await http.aclose()


async def test_openai_compatible_models_are_openai_handles_whatever_the_base_url(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    items = catalog.llm_models()
    assert [i["handle"] for i in items] == ["openai/gpt-4o-mini", "openai/gpt-4.1"]
    first = items[0]
    assert list(first) == LLM_ITEM_KEYS
    assert first["model_endpoint"] is None  # an operator's own base URL is not shown to tenants (R20)
    assert (first["model_endpoint_type"], first["provider_type"], first["provider_name"]) == ("openai",) * 3
    assert first["context_window"] == first["max_context_window"] == 128_000
    assert first["max_tokens"] == 16_384
    for item in items:
        Model.model_validate(item)


async def test_listing_shows_only_well_known_public_base_urls(http):
    catalog = ModelCatalog(make_settings(openai_api_key="sk-x"), http)  # api.openai.com, never called here
    catalog._ids["openai"] = ["gpt-4o-mini"]
    assert [i["model_endpoint"] for i in catalog.llm_models()] == ["https://api.openai.com/v1"]
    assert catalog.embedding_models()[0]["embedding_endpoint"] == "https://api.openai.com/v1"
    assert Provider("anthropic", "anthropic", "https://api.anthropic.com/v1").shown_base_url is not None
    for internal in ("http://api.openai.com/v1", "https://api.openai.com:8443/v1", "https://vllm.internal/v1"):
        assert Provider("openai", "openai", internal).shown_base_url is None


async def test_bearer_key_is_sent_when_configured(http):
    with ScriptedOpenAI(api_key="sk-test") as fake:
        good = ModelCatalog(make_settings(openai_base_url=fake.base_url, openai_api_key="sk-test"), http)
        bad = ModelCatalog(make_settings(openai_base_url=fake.base_url, openai_api_key="sk-wrong"), http)
        await good.refresh()
        await bad.refresh()
    assert [i["handle"] for i in good.llm_models()] == ["openai/gpt-4o-mini"]
    assert bad.llm_models() == []


async def test_resolve_llm_returns_llm_config_capped_at_128k(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    config = await catalog.resolve_llm("openai/gpt-4.1")
    assert config["handle"] == "openai/gpt-4.1"
    assert config["model"] == "gpt-4.1"
    assert config["context_window"] == 128_000
    for key in ("name", "display_name", "provider_type", "model_type", "max_context_window"):
        assert key not in config
    LlmConfig.model_validate(config)
    listed = next(i for i in catalog.llm_models() if i["model"] == "gpt-4.1")
    assert listed["max_context_window"] == 1_047_576


async def test_openai_proxy_handle_is_an_alias_of_openai(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    config = await catalog.resolve_llm("openai-proxy/gpt-4o-mini")
    assert config["handle"] == "openai/gpt-4o-mini"
    assert config == await catalog.resolve_llm("openai/gpt-4o-mini")


@pytest.mark.parametrize("handle", ["gpt-4o-mini", "openai/", "/gpt-4o-mini"])
async def test_malformed_handle_is_invalid_input(openai_fake, http, handle):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    with pytest.raises(InvalidInput, match="provider/model-name"):
        await catalog.resolve_llm(handle)


async def test_unknown_handle_rereads_the_provider_before_404(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http, reread_after_s=0)
    await catalog.refresh()
    openai_fake.add_model("gpt-4o-2024-11-20")
    config = await catalog.resolve_llm("openai/gpt-4o-2024-11-20")
    assert config["handle"] == "openai/gpt-4o-2024-11-20"
    assert openai_fake.model_list_reads == 2
    with pytest.raises(NotFound, match="Handle 'openai/nope' not found"):
        await catalog.resolve_llm("openai/nope")
    assert openai_fake.model_list_reads == 3


async def test_rereads_are_rate_limited(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http, reread_after_s=60)
    await catalog.refresh()
    openai_fake.add_model("gpt-4o-2024-11-20")
    for _ in range(3):
        with pytest.raises(NotFound):
            await catalog.resolve_llm("openai/gpt-4o-2024-11-20")
    assert openai_fake.model_list_reads == 1


async def test_handle_of_unconfigured_provider_is_not_found(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    with pytest.raises(NotFound):
        await catalog.resolve_llm("anthropic/claude-sonnet-4-20250514")


async def test_embedding_ids_are_not_chat_models(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    with pytest.raises(NotFound):
        await catalog.resolve_llm("openai/text-embedding-3-small")


async def test_embedding_models_are_the_fixed_openai_three_and_local(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    items = catalog.embedding_models()
    assert [(i["handle"], i["embedding_dim"]) for i in items] == [
        ("openai/text-embedding-ada-002", 1536),
        ("openai/text-embedding-3-small", 1536),
        ("openai/text-embedding-3-large", 3072),
        ("local/all-minilm-l6-v2", 384),
    ]
    assert items[1]["embedding_endpoint"] is None  # not shown to tenants (R20)
    for item in items:
        EmbeddingModel.model_validate(item)


async def test_without_openai_only_the_local_embedding_is_listed(http):
    catalog = ModelCatalog(make_settings(), http)
    assert [i["handle"] for i in catalog.embedding_models()] == ["local/all-minilm-l6-v2"]
    with pytest.raises(InvalidInput, match="Embedding model openai/text-embedding-3-small not found"):
        await catalog.resolve_embedding("openai/text-embedding-3-small")


async def test_resolve_embedding_returns_embedding_config(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    local = await catalog.resolve_embedding("local/all-minilm-l6-v2")
    assert local["embedding_endpoint_type"] == "hugging-face"
    assert local["embedding_dim"] == 384
    assert (local["embedding_chunk_size"], local["batch_size"]) == (300, 32)
    remote = await catalog.resolve_embedding("openai-proxy/text-embedding-3-large")
    assert remote["handle"] == "openai/text-embedding-3-large"
    assert remote["embedding_endpoint"] == openai_fake.base_url
    for config in (local, remote):
        assert "name" not in config and "provider_name" not in config
        EmbeddingConfig.model_validate(config)
    with pytest.raises(InvalidInput, match="Embedding model openai/nope not found"):
        await catalog.resolve_embedding("openai/nope")


async def test_anthropic_models_are_listed_across_pages(http):
    models = [f"claude-test-{i:04d}" for i in range(1005)]
    with ScriptedAnthropic(models=models, api_key="ak-test") as fake:
        settings = make_settings(anthropic_api_key="ak-test", anthropic_base_url=fake.base_url)
        catalog = ModelCatalog(settings, http)
        await catalog.refresh()
        config = await catalog.resolve_llm("anthropic/claude-test-0003")
    items = catalog.llm_models(provider_type="anthropic")
    assert len(items) == 1005
    assert items[0]["handle"] == "anthropic/claude-test-0000"
    assert items[0]["model_endpoint_type"] == "anthropic"
    assert items[0]["model_endpoint"] is None
    assert config["model_endpoint"] == fake.base_url  # the stored config keeps where to call
    assert config["context_window"] == 128_000
    Model.model_validate(items[0])


async def test_anthropic_needs_its_key_to_list(http):
    with ScriptedAnthropic(api_key="ak-test") as fake:
        settings = make_settings(anthropic_api_key="ak-wrong", anthropic_base_url=fake.base_url)
        catalog = ModelCatalog(settings, http)
        await catalog.refresh()
    assert catalog.llm_models() == []


async def test_ollama_and_vllm_are_further_openai_compatible_providers(openai_fake, http):
    with ScriptedOpenAI(models=("llama3.1:8b",)) as ollama:
        settings = make_settings(
            ollama_base_url=ollama.base_url.removesuffix("/v1"), vllm_api_base=openai_fake.base_url
        )
        catalog = ModelCatalog(settings, http)
        await catalog.refresh()
    assert [i["handle"] for i in catalog.llm_models()] == [
        "ollama/llama3.1:8b",
        "vllm/gpt-4o-mini",
        "vllm/gpt-4.1",
    ]
    ollama_item = catalog.llm_models(provider_name="ollama")[0]
    assert ollama_item["model_endpoint"] is None
    assert ollama_item["model_endpoint_type"] == "ollama"
    assert ollama_item["context_window"] == 131_072
    assert [i["handle"] for i in catalog.embedding_models()] == ["local/all-minilm-l6-v2"]


async def test_provider_down_lists_nothing_and_does_not_raise(openai_fake, http):
    settings = make_settings(
        openai_base_url=f"http://127.0.0.1:{closed_port()}/v1", vllm_api_base=openai_fake.base_url
    )
    catalog = ModelCatalog(settings, http, reread_after_s=0)
    await catalog.refresh()
    assert catalog.llm_models(provider_name="openai") == []
    assert [i["handle"] for i in catalog.llm_models()] == ["vllm/gpt-4o-mini", "vllm/gpt-4.1"]
    with pytest.raises(NotFound):
        await catalog.resolve_llm("openai/gpt-4o-mini")


async def test_provider_that_stops_answering_keeps_its_last_listing(http):
    fake = ScriptedOpenAI().start()
    catalog = ModelCatalog(make_settings(openai_base_url=fake.base_url), http)
    await catalog.refresh()
    fake.stop()
    await catalog.refresh()
    assert [i["handle"] for i in catalog.llm_models()] == ["openai/gpt-4o-mini"]


@pytest.mark.parametrize(
    ("model_id", "window"),
    [
        ("gpt-4o-mini", 128_000),
        ("gpt-4o-2024-08-06", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-4-turbo", 128_000),
        ("gpt-4", 8_192),
        ("gpt-3.5-turbo", 16_385),
        ("o1-mini", 128_000),
        ("o3-mini", 200_000),
        ("o4-mini", 200_000),
        ("gpt-5-mini", 400_000),
        ("claude-3-5-haiku-20241022", 200_000),
        ("claude-sonnet-4-20250514", 200_000),
        ("meta-llama/Llama-3.1-8B-Instruct", 131_072),
        ("llama3:8b", 8_192),
        ("qwen2.5:7b", 32_768),
        ("mistral-large-latest", 131_072),
        ("mistral:7b", 32_768),
        ("some-new-model", DEFAULT_CONTEXT_WINDOW),
    ],
)
def test_context_window_of_known_families(model_id, window):
    assert context_window_for(model_id) == window


def test_normalize_llm_config_fills_defaults_and_derives_the_handle():
    config = normalize_llm_config(
        {"model": "gpt-4o-mini", "model_endpoint_type": "openai", "context_window": 32_000}
    )
    assert config["handle"] == "openai/gpt-4o-mini"
    assert config["context_window"] == 32_000
    assert config["max_tokens"] == 16_000
    assert config["model_endpoint"] is None
    LlmConfig.model_validate(config)


async def test_normalize_llm_config_accepts_a_listed_model_item(openai_fake, http):
    catalog = ModelCatalog(make_settings(openai_base_url=openai_fake.base_url), http)
    await catalog.refresh()
    item = {**catalog.llm_models()[0], "handle": "openai-proxy/gpt-4o-mini"}
    config = normalize_llm_config(item)
    assert config["handle"] == "openai/gpt-4o-mini"
    assert "max_context_window" not in config and "name" not in config


@pytest.mark.parametrize("missing", ["model", "model_endpoint_type", "context_window"])
def test_normalize_llm_config_requires_model_endpoint_type_and_window(missing):
    config = {"model": "gpt-4o-mini", "model_endpoint_type": "openai", "context_window": 8_192}
    del config[missing]
    with pytest.raises(InvalidInput, match=missing):
        normalize_llm_config(config)


def test_normalize_embedding_config_fills_defaults():
    config = normalize_embedding_config(
        {
            "embedding_endpoint_type": "openai",
            "embedding_model": "text-embedding-3-small",
            "embedding_dim": 1536,
        }
    )
    assert config["handle"] == "openai/text-embedding-3-small"
    assert (config["embedding_chunk_size"], config["batch_size"]) == (300, 32)
    assert config["azure_endpoint"] is None
    EmbeddingConfig.model_validate(config)
    local = normalize_embedding_config(
        {
            "embedding_endpoint_type": "hugging-face",
            "embedding_model": "all-minilm-l6-v2",
            "embedding_dim": 384,
        }
    )
    assert local["handle"] == "local/all-minilm-l6-v2"


def test_normalize_embedding_config_requires_dim():
    with pytest.raises(InvalidInput, match="embedding_dim"):
        normalize_embedding_config({"embedding_endpoint_type": "openai", "embedding_model": "x"})
