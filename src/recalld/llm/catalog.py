"""The model catalogue: which chat and embedding models each configured provider offers, by handle.

Handles are `<provider>/<model id>` (contract R1): `openai/` for the OpenAI-compatible provider whatever
its base URL (`openai-proxy/` is accepted as an input alias), `ollama/` and `vllm/` for Letta's extra
OpenAI-compatible providers, `anthropic/` for Anthropic, and `local/` for the in-process embedding model.
Chat models come from each provider's `GET {base}/models`, read at start-up and re-read when a handle
is missing (R2); embedding models are a fixed list (R3).

`model_endpoint_type` names the wire protocol the LLM client must speak: `anthropic` means the Messages
API, every other value (`openai`, `ollama`, `vllm`) means `POST {model_endpoint}/chat/completions`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from recalld.errors import InvalidInput, NotFound
from recalld.llm.http import ProviderHTTP, client_timeout
from recalld.settings import Settings

log = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
# Letta copies at most this many tokens of a model's window into an agent's llm_config.
GLOBAL_MAX_CONTEXT_WINDOW = 128_000
# Used for ids the table below does not know. Choosing too large a window makes the agent overflow the
# model's real one and fail with provider 400s; too small only makes compaction start earlier. 8,192 is
# the smallest window among current open chat models (Llama 3, Gemma 2), so it errs on the safe side.
# context_window_limit / llm_config.context_window override it.
DEFAULT_CONTEXT_WINDOW = 8_192
DEFAULT_MAX_OUTPUT_TOKENS = 4_096

# (pattern matched against the lower-cased id without any "org/" prefix, context window, max output).
# First match wins, so specific families come before the general ones.
_WINDOWS: list[tuple[re.Pattern[str], int, int]] = [
    (re.compile(p), window, out)
    for p, window, out in [
        (r"^gpt-5", 400_000, 128_000),
        (r"^gpt-4\.1", 1_047_576, 32_768),
        (r"^gpt-4o", 128_000, 16_384),
        (r"^(chatgpt-4o|gpt-4\.5)", 128_000, 16_384),
        (r"^gpt-4-turbo|^gpt-4-\d{4}-preview", 128_000, 4_096),
        (r"^gpt-4-32k", 32_768, 4_096),
        (r"^gpt-4(-\d{4})?$", 8_192, 4_096),
        (r"^gpt-3\.5-turbo-instruct", 4_096, 4_096),
        (r"^gpt-3\.5", 16_385, 4_096),
        (r"^o1-(mini|preview)", 128_000, 32_768),
        (r"^o[134]\b", 200_000, 100_000),
        (r"^gpt-oss", 131_072, 32_768),
        (r"^claude-3-(haiku|opus|sonnet)", 200_000, 4_096),
        (r"^claude-", 200_000, 8_192),
        (r"llama-?2", 4_096, 2_048),
        (r"llama-?3\.[1-3]|llama-?4", 131_072, 8_192),
        (r"llama-?3", 8_192, 4_096),
        (r"qwen", 32_768, 8_192),
        (r"mistral-(large|nemo|medium)|ministral|codestral", 131_072, 8_192),
        (r"mistral|mixtral", 32_768, 8_192),
        (r"gemma-?3", 131_072, 8_192),
        (r"gemma", 8_192, 4_096),
        (r"phi-?4", 16_384, 4_096),
        (r"deepseek", 65_536, 8_192),
    ]
]

# Only the real OpenAI API lists audio, image and moderation models beside the chat ones; keeping them
# out of the catalogue makes an agent naming one a clear 404 instead of a provider error mid-turn.
_OPENAI_NON_CHAT = re.compile(
    r"whisper|tts|dall-e|moderation|gpt-image|transcribe|realtime|audio|davinci|babbage|sora"
)

_LLM_ONLY_KEYS = ("name", "display_name", "provider_type", "model_type", "max_context_window")
_EMBEDDING_ONLY_KEYS = ("name", "display_name", "provider_type", "provider_name", "model_type")


# Base URLs that are public knowledge, shown to tenants as they are; any other reads as null (contract R20).
WELL_KNOWN_PUBLIC_HOSTS = frozenset({"api.openai.com", "api.anthropic.com"})


@dataclass(frozen=True)
class Provider:
    """A configured model provider: `name` is the handle prefix, `kind` the protocol."""

    name: str  # openai | ollama | vllm | anthropic
    kind: str  # "openai" (OpenAI-compatible) or "anthropic"
    base_url: str  # includes /v1
    api_key: str | None = None

    @property
    def shown_base_url(self) -> str | None:
        """The base URL as tenants may see it: itself when it is a well-known public API, else None (an
        operator's internal model server stays unnamed)."""
        parts = urlsplit(self.base_url)
        public = parts.scheme == "https" and parts.port in (None, 443) and parts.hostname in WELL_KNOWN_PUBLIC_HOSTS
        return self.base_url if public else None


def _with_v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def providers_from_settings(settings: Settings) -> list[Provider]:
    """The providers the settings enable, in listing order."""
    providers: list[Provider] = []
    if settings.openai_api_key or settings.openai_base_url:
        base = (settings.openai_base_url or OPENAI_DEFAULT_BASE).rstrip("/")
        providers.append(Provider("openai", "openai", base, settings.openai_api_key))
    if settings.ollama_base_url:
        providers.append(Provider("ollama", "openai", _with_v1(settings.ollama_base_url)))
    if settings.vllm_api_base:
        # Letta documents VLLM_API_BASE with /v1; users who leave it off still mean the same server.
        providers.append(Provider("vllm", "openai", _with_v1(settings.vllm_api_base)))
    if settings.anthropic_api_key:
        base = settings.anthropic_base_url.rstrip("/")
        providers.append(Provider("anthropic", "anthropic", base, settings.anthropic_api_key))
    return providers


def _family_row(model_id: str) -> tuple[int, int]:
    key = model_id.lower().rsplit("/", 1)[-1]
    for pattern, window, out in _WINDOWS:
        if pattern.search(key):
            return window, out
    return DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT_TOKENS


def context_window_for(model_id: str) -> int:
    """The model's full context window in tokens, from the family table or DEFAULT_CONTEXT_WINDOW."""
    return _family_row(model_id)[0]


def _is_embedding_id(model_id: str) -> bool:
    return "embedding" in model_id.lower()


def _llm_item(provider: Provider, model_id: str) -> dict[str, Any]:
    """One `GET /v1/models/` item, in the key order Letta sends."""
    window, max_output = _family_row(model_id)
    endpoint_type = "anthropic" if provider.kind == "anthropic" else provider.name
    return {
        "handle": f"{provider.name}/{model_id}",
        "name": model_id,
        "display_name": model_id,
        "provider_type": provider.name,
        "provider_name": provider.name,
        "model_type": "llm",
        "model": model_id,
        "model_endpoint_type": endpoint_type,
        "model_endpoint": provider.base_url,
        "provider_category": "base",
        "model_wrapper": None,
        "context_window": window,
        "put_inner_thoughts_in_kwargs": False,
        "temperature": 1.0,
        "max_tokens": min(max_output, window // 2),
        "enable_reasoner": True,
        "reasoning_effort": None,
        "max_reasoning_tokens": 0,
        "effort": None,
        "frequency_penalty": None,
        "compatibility_type": None,
        "verbosity": None,
        "tier": None,
        "parallel_tool_calls": False,
        "response_format": None,
        "strict": False,
        "return_logprobs": False,
        "top_logprobs": None,
        "return_token_ids": False,
        "tool_call_parser": None,
        "max_context_window": window,
    }


def _embedding_item(
    handle: str,
    provider_name: str,
    provider_type: str,
    endpoint_type: str,
    endpoint: str | None,
    model: str,
    dim: int,
) -> dict[str, Any]:
    return {
        "handle": handle,
        "name": model,
        "display_name": model,
        "provider_type": provider_type,
        "provider_name": provider_name,
        "model_type": "embedding",
        "embedding_endpoint_type": endpoint_type,
        "embedding_endpoint": endpoint,
        "embedding_model": model,
        "embedding_dim": dim,
        "embedding_chunk_size": 300,
        "batch_size": 32,
        "azure_endpoint": None,
        "azure_version": None,
        "azure_deployment": None,
    }


OPENAI_EMBEDDINGS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}
LOCAL_EMBEDDING_HANDLE = "local/all-minilm-l6-v2"
# The SDK's EmbeddingConfig.embedding_endpoint_type is a closed Literal with no "local"; "hugging-face"
# is allowed, is also a valid ProviderType, and is where the model comes from, so the SDK parses it.
LOCAL_EMBEDDING_ENDPOINT_TYPE = "hugging-face"
LOCAL_EMBEDDING = _embedding_item(
    LOCAL_EMBEDDING_HANDLE,
    "local",
    LOCAL_EMBEDDING_ENDPOINT_TYPE,
    LOCAL_EMBEDDING_ENDPOINT_TYPE,
    None,
    "all-minilm-l6-v2",
    384,
)


def _canonical(handle: str) -> tuple[str, str]:
    """Split a handle into (provider, model id); `openai-proxy/` is Letta's name for our `openai/`."""
    provider, _, model_id = handle.partition("/")
    if not provider or not model_id:
        raise InvalidInput("INVALID_ARGUMENT: The model handle should be in the format provider/model-name")
    return ("openai" if provider == "openai-proxy" else provider), model_id


class ModelCatalog:
    """Chat and embedding models of the configured providers, read over HTTP and kept in memory."""

    def __init__(
        self,
        settings: Settings,
        http: ProviderHTTP,
        *,
        list_timeout_s: float = 10.0,
        reread_after_s: float = 3.0,
    ):
        self.providers = providers_from_settings(settings)
        self._http = http
        # Listing happens at start-up: an unreachable provider must not hold it for the full LLM timeout.
        self._list_timeout = client_timeout(min(list_timeout_s, settings.llm_timeout_s))
        self._reread_after_s = reread_after_s
        self._ids: dict[str, list[str]] = {p.name: [] for p in self.providers}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def provider(self, name: str) -> Provider | None:
        """The configured provider with this handle prefix (aliases resolved), if any."""
        name = "openai" if name == "openai-proxy" else name
        return next((p for p in self.providers if p.name == name), None)

    async def refresh(self) -> None:
        """Re-read every provider's model list; a provider that fails keeps what it last listed."""
        listings = await asyncio.gather(*(self._list(p) for p in self.providers))
        for provider, ids in zip(self.providers, listings, strict=True):
            if ids is not None:
                self._ids[provider.name] = ids
        self._read_at = time.monotonic()
        log.info(
            "model catalogue: %s", ", ".join(f"{n}={len(ids)}" for n, ids in self._ids.items()) or "empty"
        )

    async def _list(self, provider: Provider) -> list[str] | None:
        try:
            if provider.kind == "anthropic":
                ids = await self._list_anthropic(provider)
            else:
                ids = await self._list_openai(provider)
        except Exception as exc:  # any failure, even a malformed body, must leave start-up running
            log.warning("model list of provider %s at %s failed: %r", provider.name, provider.base_url, exc)
            return None
        if provider.kind == "openai" and provider.base_url == OPENAI_DEFAULT_BASE:
            ids = [i for i in ids if not _OPENAI_NON_CHAT.search(i)]
        return list(dict.fromkeys(ids))  # dedupe, keep the provider's order

    async def _list_openai(self, provider: Provider) -> list[str]:
        headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
        url = f"{provider.base_url}/models"
        async with await self._http.get(url, headers=headers, timeout=self._list_timeout) as resp:
            resp.raise_for_status()
            listing = orjson.loads(await resp.read())
        return [str(m["id"]) for m in listing["data"]]

    async def _list_anthropic(self, provider: Provider) -> list[str]:
        headers = {"x-api-key": provider.api_key or "", "anthropic-version": ANTHROPIC_VERSION}
        ids: list[str] = []
        params: dict[str, str | int] = {"limit": 1000}
        for _ in range(20):  # pages; a bound so a misbehaving server cannot loop us forever
            url = f"{provider.base_url}/models"
            async with await self._http.get(url, headers=headers, params=params, timeout=self._list_timeout) as resp:
                resp.raise_for_status()
                page = orjson.loads(await resp.read())
            ids.extend(str(m["id"]) for m in page["data"])
            if not page.get("has_more") or not page.get("last_id"):
                break
            params["after_id"] = page["last_id"]
        return ids

    def llm_models(self, provider_name: str | None = None, provider_type: str | None = None) -> list[dict]:
        """Chat models as `GET /v1/models/` items, optionally filtered by provider name or type."""
        items = []
        for provider in self.providers:
            if provider_name is not None and provider.name != provider_name:
                continue
            if provider_type is not None and provider.name != provider_type:
                continue
            shown = provider.shown_base_url
            items.extend(
                {**_llm_item(provider, i), "model_endpoint": shown}
                for i in self._ids[provider.name]
                if not _is_embedding_id(i)
            )
        return items

    def embedding_models(self) -> list[dict]:
        """Embedding models as `GET /v1/models/embedding` items: OpenAI's fixed three, then the local one."""
        openai = self.provider("openai")
        shown = openai.shown_base_url if openai is not None else None
        return [
            {**item, "embedding_endpoint": shown} if item["embedding_endpoint"] else item
            for item in self._embedding_items()
        ]

    def _embedding_items(self) -> list[dict]:
        """The embedding models with their real endpoints, as configs are built from them."""
        items = []
        openai = self.provider("openai")
        if openai is not None:
            for model, dim in OPENAI_EMBEDDINGS.items():
                handle = f"openai/{model}"
                items.append(
                    _embedding_item(handle, "openai", "openai", "openai", openai.base_url, model, dim)
                )
        items.append(dict(LOCAL_EMBEDDING))
        return items

    def _find_llm(self, provider_name: str, model_id: str) -> dict | None:
        provider = self.provider(provider_name)
        if provider is None or _is_embedding_id(model_id) or model_id not in self._ids[provider.name]:
            return None
        return _llm_item(provider, model_id)

    async def resolve_llm(self, handle: str) -> dict:
        """The LLMConfig dict for a chat model handle; 400 on a malformed handle, 404 on an unknown one."""
        provider_name, model_id = _canonical(handle)
        item = self._find_llm(provider_name, model_id)
        if item is None and self.provider(provider_name) is not None:
            # The provider may have gained the model since we last asked (a vLLM restart, an Ollama pull).
            await self._reread_if_stale()
            item = self._find_llm(provider_name, model_id)
        if item is None:
            raise NotFound(f"Handle '{handle}' not found")
        config = {k: v for k, v in item.items() if k not in _LLM_ONLY_KEYS}
        config["context_window"] = min(item["context_window"], GLOBAL_MAX_CONTEXT_WINDOW)
        return config

    async def _reread_if_stale(self) -> None:
        # The lock makes a burst of misses cost one re-read; the age check bounds re-reads to one
        # per reread_after_s however many unknown handles arrive.
        async with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= self._reread_after_s:
                await self.refresh()

    async def resolve_embedding(self, handle: str) -> dict:
        """The EmbeddingConfig dict for an embedding handle; 400 when the handle is not offered."""
        provider_name, model_id = handle.partition("/")[::2]
        canonical = f"{'openai' if provider_name == 'openai-proxy' else provider_name}/{model_id}"
        for item in self._embedding_items():
            if item["handle"] == canonical:
                return {k: v for k, v in item.items() if k not in _EMBEDDING_ONLY_KEYS}
        raise InvalidInput(f"INVALID_ARGUMENT: Embedding model {handle} not found")


# Defaults for what a user-given llm_config leaves out: those of a catalogue item. model_endpoint stays
# None when not given, meaning "the configured provider's base URL" to the LLM client.
_LLM_DEFAULTS = {
    k: v
    for k, v in _llm_item(Provider("openai", "openai", ""), "x").items()
    if k not in _LLM_ONLY_KEYS and k not in ("handle", "model", "model_endpoint_type", "context_window")
}
_LLM_DEFAULTS.update(model_endpoint=None, provider_name=None, max_tokens=None)


def _require(config: dict, fields: tuple[str, ...], what: str) -> None:
    missing = [f for f in fields if config.get(f) in (None, "")]
    if missing:
        raise InvalidInput(f"INVALID_ARGUMENT: {what} is missing {', '.join(missing)}")


def normalize_llm_config(config: dict) -> dict:
    """A user-given llm_config completed with defaults; 400 when model, endpoint type or window is missing."""
    _require(config, ("model", "model_endpoint_type", "context_window"), "llm_config")
    window = config["context_window"]
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise InvalidInput("INVALID_ARGUMENT: llm_config.context_window must be a positive integer")
    # A Model item from models.list() is often passed back as llm_config: drop its listing-only keys.
    merged = {**_LLM_DEFAULTS, **{k: v for k, v in config.items() if k not in _LLM_ONLY_KEYS}}
    if merged.get("max_tokens") is None:
        merged["max_tokens"] = min(_family_row(str(merged["model"]))[1], window // 2)
    handle = merged.get("handle") or f"{merged['model_endpoint_type']}/{merged['model']}"
    provider_name, model_id = _canonical(handle)
    merged["handle"] = f"{provider_name}/{model_id}"
    return merged


def normalize_embedding_config(config: dict) -> dict:
    """A user-given embedding_config completed with defaults; 400 without endpoint type, model or dim."""
    _require(config, ("embedding_endpoint_type", "embedding_model", "embedding_dim"), "embedding_config")
    dim = config["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise InvalidInput("INVALID_ARGUMENT: embedding_config.embedding_dim must be a positive integer")
    defaults = {
        "embedding_endpoint": None,
        "embedding_chunk_size": 300,
        "handle": None,
        "batch_size": 32,
        "azure_endpoint": None,
        "azure_version": None,
        "azure_deployment": None,
    }
    merged = {**defaults, **{k: v for k, v in config.items() if k not in _EMBEDDING_ONLY_KEYS}}
    if not merged["handle"]:
        # recalld names its in-process models local/, whatever endpoint type the SDK made us report.
        endpoint_type = merged["embedding_endpoint_type"]
        prefix = "local" if endpoint_type == LOCAL_EMBEDDING_ENDPOINT_TYPE else endpoint_type
        merged["handle"] = f"{prefix}/{merged['embedding_model']}"
    elif merged["handle"].startswith("openai-proxy/"):
        merged["handle"] = "openai/" + merged["handle"].removeprefix("openai-proxy/")
    return merged
