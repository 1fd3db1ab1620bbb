"""/v1/models: what the configured providers offer (contract 7.3)."""

from __future__ import annotations

from fastapi import APIRouter

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import QText, QTextList
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.models import EmbeddingModel, LLMModel

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("/", response_model=list[LLMModel], responses=error_responses())
async def list_llm_models(
    caller: CallerDep,
    services: ServicesDep,
    provider_category: QTextList = None,
    provider_name: QText = None,
    provider_type: QText = None,
) -> list[dict]:
    """Chat models of every configured provider."""
    models = services.models.llm_models(provider_name=provider_name, provider_type=provider_type)
    if provider_category:
        models = [m for m in models if m.get("provider_category", "base") in provider_category]
    return models


@router.get("/embedding", response_model=list[EmbeddingModel], responses=error_responses())
async def list_embedding_models(caller: CallerDep, services: ServicesDep) -> list[dict]:
    """Embedding models: the local model (no key, no network) and those of the configured providers."""
    return services.models.embedding_models()
