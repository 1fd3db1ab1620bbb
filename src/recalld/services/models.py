"""The model catalogue as services see it: resolving handles and listing models of the providers."""

from __future__ import annotations

from recalld.llm import catalog as catalog_mod
from recalld.llm.catalog import ModelCatalog


class ModelResolver:
    """Resolves model handles into llm/embedding configs; lists what the configured providers offer."""

    def __init__(self, catalog: ModelCatalog):
        self.catalog = catalog

    async def resolve_llm(self, handle: str) -> dict:
        return await self.catalog.resolve_llm(handle)

    async def resolve_embedding(self, handle: str) -> dict:
        return await self.catalog.resolve_embedding(handle)

    def normalize_llm_config(self, config: dict) -> dict:
        return catalog_mod.normalize_llm_config(config)

    def normalize_embedding_config(self, config: dict) -> dict:
        return catalog_mod.normalize_embedding_config(config)

    def llm_models(self, provider_name: str | None = None, provider_type: str | None = None) -> list[dict]:
        return self.catalog.llm_models(provider_name=provider_name, provider_type=provider_type)

    def embedding_models(self) -> list[dict]:
        return self.catalog.embedding_models()
