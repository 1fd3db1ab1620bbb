"""LLM and embedding model descriptions (contract 7.3)."""

from __future__ import annotations

from .types import Bool, Int, JSONObject, Number, RequestModel, ResponseModel, Text


class LLMConfig(ResponseModel):
    model: str
    model_endpoint_type: str
    context_window: int
    handle: str | None = None
    model_endpoint: str | None = None
    provider_name: str | None = None
    provider_category: str | None = None
    model_wrapper: str | None = None
    put_inner_thoughts_in_kwargs: bool | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    enable_reasoner: bool | None = None
    reasoning_effort: str | None = None
    max_reasoning_tokens: int | None = None
    frequency_penalty: float | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None
    strict: bool | None = None


class EmbeddingConfig(ResponseModel):
    embedding_endpoint_type: str
    embedding_model: str
    embedding_dim: int
    embedding_endpoint: str | None = None
    embedding_chunk_size: int | None = None
    handle: str | None = None
    batch_size: int | None = None
    azure_endpoint: str | None = None
    azure_version: str | None = None
    azure_deployment: str | None = None


class LLMConfigIn(RequestModel):
    """An llm_config given on create/update instead of a handle."""

    model: Text
    model_endpoint_type: Text
    context_window: Int
    handle: Text | None = None
    model_endpoint: Text | None = None
    provider_name: Text | None = None
    provider_category: Text | None = None
    model_wrapper: Text | None = None
    put_inner_thoughts_in_kwargs: Bool | None = None
    temperature: Number | None = None
    max_tokens: Int | None = None
    enable_reasoner: Bool | None = None
    reasoning_effort: Text | None = None
    max_reasoning_tokens: Int | None = None
    frequency_penalty: Number | None = None
    parallel_tool_calls: Bool | None = None
    response_format: JSONObject | None = None
    strict: Bool | None = None


class EmbeddingConfigIn(RequestModel):
    embedding_endpoint_type: Text
    embedding_model: Text
    embedding_dim: Int
    embedding_endpoint: Text | None = None
    embedding_chunk_size: Int | None = None
    handle: Text | None = None
    batch_size: Int | None = None
    azure_endpoint: Text | None = None
    azure_version: Text | None = None
    azure_deployment: Text | None = None


class LLMModel(LLMConfig):
    name: str
    display_name: str | None = None
    provider_type: str
    model_type: str = "llm"
    max_context_window: int


class EmbeddingModel(EmbeddingConfig):
    name: str
    display_name: str
    provider_name: str
    provider_type: str
    model_type: str = "embedding"
