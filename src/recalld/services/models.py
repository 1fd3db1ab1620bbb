"""The model catalogue as services see it: resolving handles and listing models of the providers, checking the
endpoints a tenant names and hiding the operator's own (contract R20)."""

from __future__ import annotations

from recalld.llm import catalog as catalog_mod
from recalld.llm.catalog import ModelCatalog
from recalld.llm.outbound import OutboundPolicy

LLM_ENDPOINT_FIELD = "llm_config.model_endpoint"
EMBEDDING_ENDPOINT_FIELD = "embedding_config.embedding_endpoint"


class ModelResolver:
    """Resolves model handles into llm/embedding configs; lists what the configured providers offer."""

    def __init__(self, catalog: ModelCatalog, policy: OutboundPolicy | None = None):
        self.catalog = catalog
        self.policy = policy or OutboundPolicy(catalog.providers)

    async def resolve_llm(self, handle: str) -> dict:
        return await self.catalog.resolve_llm(handle)

    async def resolve_embedding(self, handle: str) -> dict:
        return await self.catalog.resolve_embedding(handle)

    def normalize_llm_config(self, config: dict) -> dict:
        """A tenant-given llm_config, completed; 400 naming the field when its endpoint is not allowed."""
        merged = catalog_mod.normalize_llm_config(config)
        merged["model_endpoint"] = self.policy.checked(merged.get("model_endpoint"), LLM_ENDPOINT_FIELD)
        return merged

    def normalize_embedding_config(self, config: dict) -> dict:
        """A tenant-given embedding_config, completed; 400 naming the field when its endpoint is not allowed."""
        merged = catalog_mod.normalize_embedding_config(config)
        merged["embedding_endpoint"] = self.policy.checked(merged.get("embedding_endpoint"), EMBEDDING_ENDPOINT_FIELD)
        return merged

    def llm_models(self, provider_name: str | None = None, provider_type: str | None = None) -> list[dict]:
        return self.catalog.llm_models(provider_name=provider_name, provider_type=provider_type)

    def embedding_models(self) -> list[dict]:
        return self.catalog.embedding_models()

    # --- what tenants see -----------------------------------------------------------------------------

    def shown_endpoint(self, value: str | None) -> str | None:
        return self.policy.shown(value)

    def shown_llm_config(self, config: dict | None) -> dict | None:
        if not config or not config.get("model_endpoint"):
            return config
        return {**config, "model_endpoint": self.policy.shown(config["model_endpoint"])}

    def shown_embedding_config(self, config: dict | None) -> dict | None:
        if not config or not config.get("embedding_endpoint"):
            return config
        return {**config, "embedding_endpoint": self.policy.shown(config["embedding_endpoint"])}
