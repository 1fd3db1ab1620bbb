"""Choosing the chat client for an agent's llm_config: protocol, endpoint and key."""

from __future__ import annotations

from recalld.errors import InvalidInput
from recalld.llm.catalog import ModelCatalog
from recalld.llm.http import ProviderHTTP
from recalld.llm.openai import OpenAIChatClient
from recalld.llm.types import ChatClient
from recalld.obs import tracing
from recalld.settings import Settings

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
MAX_CLIENTS = 256


class ChatClients:
    """One client per (protocol, endpoint), built on first use and shared by every turn."""

    def __init__(self, settings: Settings, catalog: ModelCatalog, http: ProviderHTTP):
        self.settings = settings
        self.catalog = catalog
        self.http = http
        self._clients: dict[tuple[str, str, str | None], ChatClient] = {}

    def for_config(self, llm_config: dict) -> ChatClient:
        endpoint_type = llm_config.get("model_endpoint_type") or "openai"
        provider_name = llm_config.get("provider_name") or endpoint_type
        provider = self.catalog.provider(provider_name) or self.catalog.provider(endpoint_type)
        base_url = llm_config.get("model_endpoint") or (provider.base_url if provider else None)
        api_key = provider.api_key if provider else None
        if endpoint_type == "anthropic":
            base_url = base_url or self.settings.anthropic_base_url
            api_key = api_key or self.settings.anthropic_api_key
        elif not base_url:
            base_url = self.settings.openai_base_url or DEFAULT_OPENAI_BASE
            api_key = api_key or self.settings.openai_api_key
        if not base_url:
            raise InvalidInput(f"No endpoint is configured for model provider '{provider_name}'")
        key = (endpoint_type, base_url, api_key)
        client = self._clients.get(key)
        if client is None:
            client = tracing.traced_chat_client(self._build(endpoint_type, provider_name, base_url, api_key))
            if len(self._clients) >= MAX_CLIENTS:
                # An agent may name its own endpoint: without a bound, one client per such agent for ever.
                # Clients are thin wrappers over the shared HTTP client, so dropping the oldest costs a rebuild.
                self._clients.pop(next(iter(self._clients)))
            self._clients[key] = client
        return client

    def _build(self, endpoint_type: str, provider_name: str, base_url: str, api_key: str | None) -> ChatClient:
        timeout_s = self.settings.llm_timeout_s
        if endpoint_type == "anthropic":
            from recalld.llm.anthropic import AnthropicChatClient

            return AnthropicChatClient(
                self.http,
                provider_name=provider_name,
                base_url=base_url,
                api_key=api_key,
                timeout_s=timeout_s,
                max_retries=self.settings.llm_max_retries,
            )
        return OpenAIChatClient(
            self.http,
            provider_name=provider_name,
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            max_retries=self.settings.llm_max_retries,
        )
