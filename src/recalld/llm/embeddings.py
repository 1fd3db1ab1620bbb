"""Embedding text with the model an embedding config names: the local model in-process, or any
OpenAI-compatible `POST {base}/embeddings` (contract R3).

Every vector comes back as float32 with unit length, so cosine similarity is a dot product wherever the
vectors are compared. Failures surface as recalld errors (ProviderError and its kinds): the API answers
with them and the agent loop turns them into an error tool return; nothing is stored either way.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import numpy as np
import orjson

from recalld.errors import InvalidInput, ProviderError
from recalld.llm.catalog import LOCAL_EMBEDDING_ENDPOINT_TYPE, Provider, providers_from_settings
from recalld.llm.embeddings_local import LocalEmbedder
from recalld.llm.http import ProviderHTTP, client_timeout, read_body
from recalld.llm.outbound import OutboundPolicy
from recalld.llm.retry import http_error, with_retries
from recalld.obs import metrics, tracing
from recalld.settings import Settings

log = logging.getLogger(__name__)

LOCAL_MODEL = "all-minilm-l6-v2"
# OpenAI accepts up to 2,048 inputs per request; configs usually ask for far fewer.
MAX_INPUTS_PER_REQUEST = 2048
# Requests of one embed() call in flight at once.
CONCURRENT_REQUESTS = 4
# Models that accept a `dimensions` parameter (others, like ada-002, refuse it).
_SIZED_MODELS = ("text-embedding-3",)


def embedding_handle(config: dict) -> str:
    """The name that says which vectors can be compared with which: the config's model handle."""
    handle = config.get("handle")
    if handle:
        return str(handle)
    endpoint_type = config.get("embedding_endpoint_type")
    prefix = "local" if endpoint_type == LOCAL_EMBEDDING_ENDPOINT_TYPE else endpoint_type
    return f"{prefix}/{config.get('embedding_model')}"


def is_local(config: dict) -> bool:
    return config.get("embedding_endpoint_type") == LOCAL_EMBEDDING_ENDPOINT_TYPE


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class Embeddings:
    """One entry point for every embedding model the server can use."""

    def __init__(self, settings: Settings, http: ProviderHTTP, policy: OutboundPolicy | None = None):
        self.settings = settings
        self.http = http
        self.timeout = client_timeout(settings.llm_timeout_s, settings.outbound_timeout_s)
        self.providers: list[Provider] = providers_from_settings(settings)
        self.policy = policy or OutboundPolicy(self.providers, settings.allowed_endpoints)
        self.local = LocalEmbedder(max_batch_texts=settings.embedding_local_batch)

    async def embed(self, config: dict, texts: list[str]) -> np.ndarray:
        """Embed texts with the config's model: an (n, dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, int(config.get("embedding_dim") or 0)), dtype=np.float32)
        local = is_local(config)
        if local and str(config.get("embedding_model", "")).lower() != LOCAL_MODEL:
            raise InvalidInput(
                f"Embedding model {config.get('embedding_model')!r} is not available locally; "
                f"the local model is {LOCAL_MODEL}"
            )
        provider = "local" if local else embedding_handle(config).partition("/")[0]
        model = str(config.get("embedding_model"))
        attributes = {"gen_ai.operation.name": "embeddings", "gen_ai.system": provider, "gen_ai.request.model": model}
        started = time.perf_counter()
        with tracing.span(f"embeddings {model}", attributes, tracing.CLIENT):
            vectors = await (self.local.embed(texts) if local else self._embed_remote(config, texts))
        metrics.EMBEDDING_LATENCY.labels(provider, model).observe(time.perf_counter() - started)
        dim = config.get("embedding_dim")
        if dim and vectors.shape[1] != int(dim):
            raise ProviderError(
                f"embedding model {embedding_handle(config)} returned {vectors.shape[1]}-dimensional vectors; "
                f"its embedding_dim is {dim}"
            )
        return vectors

    def _endpoint(self, config: dict) -> tuple[str, str | None, str, bool]:
        """(base URL, API key, provider name, trusted) for a remote config. The endpoint picks the key: a
        provider's key goes only to that provider's own base URL, an allowlisted endpoint gets none, and any
        other endpoint (a row stored before R20) is refused here, before anything is sent."""
        endpoint = config.get("embedding_endpoint") or None
        if endpoint is None:
            prefix = embedding_handle(config).partition("/")[0]
            provider = next((p for p in self.providers if p.name == prefix and p.kind == "openai"), None)
            if provider is None:
                raise ProviderError(f"no endpoint is configured for embedding model {embedding_handle(config)}")
            return provider.base_url, provider.api_key, provider.name, True
        route = self.policy.route(endpoint, "embedding_config.embedding_endpoint")
        if route.provider is None:
            return route.base_url, None, "allowlisted endpoint", False
        if route.provider.kind != "openai":
            raise InvalidInput("INVALID_ARGUMENT: embedding_config.embedding_endpoint names a provider without an "
                               "OpenAI-compatible embeddings API")
        return route.provider.base_url, route.provider.api_key, route.provider.name, True

    async def _embed_remote(self, config: dict, texts: list[str]) -> np.ndarray:
        endpoint, api_key, provider_name, trusted = self._endpoint(config)
        max_bytes = self.settings.outbound_max_response_bytes
        model = str(config.get("embedding_model"))
        batch = max(1, min(int(config.get("batch_size") or 32), MAX_INPUTS_PER_REQUEST))
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        body: dict = {"model": model, "encoding_format": self.settings.embedding_encoding_format}
        if model.startswith(_SIZED_MODELS) and config.get("embedding_dim"):
            body["dimensions"] = int(config["embedding_dim"])
        gate = asyncio.Semaphore(CONCURRENT_REQUESTS)

        async def one_request(chunk: list[str]) -> np.ndarray:
            async def call() -> np.ndarray:
                response = await self.http.post(f"{endpoint}/embeddings", data=orjson.dumps({**body, "input": chunk}),
                                                headers=headers, timeout=self.timeout)
                if response.status >= 300:  # a 3xx too: redirects are not followed
                    raise await http_error(response, trusted=trusted)
                async with response:
                    content = await read_body(response, max_bytes)
                return _parse_embeddings(content, len(chunk), provider_name)

            async with gate:
                return await with_retries(provider_name, call, max_retries=self.settings.llm_max_retries)

        chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
        parts = await asyncio.gather(*(one_request(c) for c in chunks))
        return _unit(np.concatenate(parts))

    async def warm_up(self) -> None:
        """Load the local model now, so the first request does not wait for it."""
        try:
            await self.local.warm_up()
        except ProviderError as e:
            log.warning("local embedding model unavailable: %s", e.detail)

    def close(self) -> None:
        self.local.close()


def _parse_embeddings(content: bytes, expected: int, provider: str) -> np.ndarray:
    """The vectors of an OpenAI-style embeddings reply, in input order; floats or base64 float32."""
    try:
        data = orjson.loads(content)["data"]
        rows: list[np.ndarray | None] = [None] * expected
        for position, item in enumerate(data):
            index = int(item.get("index", position))
            value = item["embedding"]
            if isinstance(value, str):
                rows[index] = np.frombuffer(base64.b64decode(value), dtype="<f4")
            else:
                rows[index] = np.asarray(value, dtype=np.float32)
        if any(r is None for r in rows) or len({len(r) for r in rows if r is not None}) != 1:
            raise ValueError("missing or ragged vectors")
        return np.stack(rows)  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        # The exception's text may quote the reply: name only its kind.
        raise ProviderError(f"{provider} returned an unreadable embeddings reply ({type(e).__name__})") from e
