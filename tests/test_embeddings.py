"""Embeddings: the local all-MiniLM-L6-v2 runtime (numpy, no PyTorch) and the OpenAI-compatible client, the
latter against the scripted OpenAI server (a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest

from recalld.errors import InvalidInput, ProviderError
from recalld.llm.embeddings import Embeddings
from recalld.llm.embeddings_local import MAX_TOKENS, LocalEmbedder, MiniLM, _gelu, model_dir
from recalld.llm.http import ProviderHTTP
from recalld.settings import Settings
from tests.fakes.llm_openai import ScriptedOpenAI, fake_embedding
from tests.servers import free_port

QUALITY = json.loads((Path(__file__).parent / "data" / "archival_quality.json").read_text())
SAMPLE = [
    "The cat sat on the mat.",
    "What is the capital of France?",
    "x",
    "",
    "Ünïcödé tëxt with émojis 🎉 and 中文字符",
    "  lots   of   spaces  ",
    "Numbers 12345 and symbols #@$%^&*()",
    "My sister moved to Lisbon in 2019 and works as a marine biologist studying octopus behaviour. " * 12,
    *QUALITY["facts"][:12],
    *(q["question"] for q in QUALITY["questions"][:6]),
]


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def test_local_vectors_match_the_reference_implementation(minilm):
    """sentence-transformers (PyTorch) is the reference: every vector must agree to cosine >= 0.999."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(model_dir()), device="cpu")
    expected = reference.encode(SAMPLE, normalize_embeddings=True)
    cosines = np.sum(minilm.encode(SAMPLE) * expected, axis=1)
    assert cosines.min() >= 0.999, dict(zip(SAMPLE, cosines.round(5), strict=True))


def test_gelu_stays_within_5e_4_of_the_erf_form_the_model_was_trained_with():
    x = np.linspace(-10, 10, 20001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.abs(_gelu(x.copy(), np.empty_like(x)) - exact).max() < 5e-4


def test_local_vectors_are_unit_length_and_do_not_depend_on_the_batch(minilm):
    together = minilm.encode(SAMPLE)
    alone = np.stack([minilm.encode([text])[0] for text in SAMPLE])
    assert together.shape == (len(SAMPLE), 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.sum(together * alone, axis=1).min() > 0.99999


def test_local_model_reads_at_most_256_word_pieces(minilm):
    long_text = " ".join(f"word{i}" for i in range(600))
    assert minilm.token_counts([long_text]) == [MAX_TOKENS]
    longer = minilm.encode([long_text, long_text + " and a tail the model never reads"])
    assert float(longer[0] @ longer[1]) > 0.99999


def test_local_vectors_rank_by_meaning(minilm):
    facts = minilm.encode(["The user's dog is a border collie.", "The user's car needs new brake pads."])
    question = minilm.encode(["What breed is my pet?"])[0]
    assert int(np.argmax(facts @ question)) == 0


def test_concurrent_requests_are_gathered_into_few_passes():
    passes = []

    class CountingEmbedder(LocalEmbedder):
        def _encode(self, texts):
            passes.append(len(texts))
            return super()._encode(texts)

    embedder = CountingEmbedder(max_batch_texts=64)

    async def run():
        await embedder.warm_up()
        return await asyncio.gather(*(embedder.embed([text]) for text in SAMPLE))

    try:
        results = asyncio.run(run())
    finally:
        embedder.close()
    expected = embedder.model().encode(SAMPLE)
    for vector, want in zip(results, expected, strict=True):
        assert vector.shape == (1, 384) and float(vector[0] @ want) > 0.99999
    assert sum(passes) == len(SAMPLE) and len(passes) < len(SAMPLE)


# --- the OpenAI-compatible client --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider():
    with ScriptedOpenAI(models=("text-embedding-3-small",), api_key="sk-embed") as server:
        yield server


def _embeddings(base_url: str, **settings) -> Embeddings:
    config = Settings(
        _env_file=None,
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY="sk-embed",
        RECALLD_LLM_MAX_RETRIES="0",
        RECALLD_LLM_TIMEOUT="5",
        **settings,
    )
    return Embeddings(config, ProviderHTTP())


def _config(base_url: str | None, *, model: str = "text-embedding-3-small", dim: int = 1536, batch: int = 32) -> dict:
    return {
        "embedding_endpoint_type": "openai",
        "embedding_endpoint": base_url,
        "embedding_model": model,
        "embedding_dim": dim,
        "batch_size": batch,
        "handle": f"openai/{model}",
    }


def _embed(embeddings: Embeddings, config: dict, texts: list[str]) -> np.ndarray:
    async def run():
        try:
            return await embeddings.embed(config, texts)
        finally:
            await embeddings.http.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_remote_vectors_are_read_in_either_encoding_and_in_order(provider, encoding):
    texts = [f"text number {i}" for i in range(5)]
    vectors = _embed(_embeddings(provider.base_url, RECALLD_EMBEDDING_ENCODING_FORMAT=encoding),
                     _config(provider.base_url), texts)
    assert vectors.shape == (5, 1536) and vectors.dtype == np.float32
    for vector, text in zip(vectors, texts, strict=True):
        assert np.allclose(vector, fake_embedding(text, 1536), atol=1e-6)


def test_remote_texts_are_sent_in_batches_of_the_configs_size(provider):
    provider.reset()
    texts = [f"fact {i}" for i in range(7)]
    _embed(_embeddings(provider.base_url), _config(provider.base_url, batch=3), texts)
    sent = provider.requests_with("input")
    assert sorted(len(body["input"]) for body in sent) == [1, 3, 3]
    assert sorted(t for body in sent for t in body["input"]) == sorted(texts)


def test_provider_endpoint_comes_from_the_handle_when_the_config_has_none(provider):
    vectors = _embed(_embeddings(provider.base_url), _config(None), ["no endpoint in the config"])
    assert vectors.shape == (1, 1536)


def test_unreachable_endpoint_is_a_provider_error():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ProviderError, match="could not be reached"):
        _embed(_embeddings(dead), _config(dead), ["hello"])


def test_the_providers_key_is_not_sent_to_other_endpoints(provider):
    # An endpoint the operator did not allow is refused before anything is sent (R20)...
    elsewhere = provider.base_url.replace("127.0.0.1", "localhost")
    before = len(provider.requests)
    with pytest.raises(InvalidInput, match="embedding_config.embedding_endpoint is not allowed"):
        _embed(_embeddings(provider.base_url), _config(elsewhere), ["hello"])
    assert len(provider.requests) == before
    # ...and an allowlisted one gets no key: the scripted server, which wants one, refuses.
    allowing = _embeddings(provider.base_url, RECALLD_ALLOWED_ENDPOINTS=elsewhere)
    with pytest.raises(ProviderError, match="401"):
        _embed(allowing, _config(elsewhere), ["hello"])


def test_vectors_of_the_wrong_size_are_refused(provider):
    with pytest.raises(ProviderError, match="1536-dimensional"):
        _embed(_embeddings(provider.base_url), _config(provider.base_url, model="my-embedder", dim=100), ["x"])


def test_an_unknown_local_model_is_invalid_input():
    config = {"embedding_endpoint_type": "hugging-face", "embedding_model": "bge-large", "embedding_dim": 1024}
    with pytest.raises(InvalidInput, match="bge-large"):
        _embed(_embeddings("http://127.0.0.1:9/v1"), config, ["x"])
