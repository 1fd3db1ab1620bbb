"""Choosing the chat client for an agent's llm_config: protocol, endpoint and key (contract R20).

The endpoint decides everything. An `llm_config.model_endpoint` that is a configured provider's base URL is that
provider, spoken in its protocol with its key; one under RECALLD_ALLOWED_ENDPOINTS is called with no key, in the
protocol `model_endpoint_type` names; any other (a row stored before these rules) fails the turn. With no
endpoint, the config's provider name picks one of the configured providers, and the call goes to that provider's
own base URL. A tenant-given name never sends a key anywhere else.
"""

from __future__ import annotations

from recalld.errors import InvalidInput
from recalld.llm.catalog import ModelCatalog, Provider
from recalld.llm.http import ProviderHTTP
from recalld.llm.openai import OpenAIChatClient
from recalld.llm.outbound import OutboundPolicy
from recalld.llm.types import ChatClient
from recalld.obs import tracing
from recalld.settings import Settings

MAX_CLIENTS = 256
# The name allowlisted endpoints go by in errors, spans and logs (a tenant-given name would be unbounded).
ALLOWLISTED = "allowlisted endpoint"
ENDPOINT_FIELD = "llm_config.model_endpoint"


class ChatClients:
    """One client per (endpoint, protocol, provider), built on first use and shared by every turn."""

    def __init__(self, settings: Settings, catalog: ModelCatalog, http: ProviderHTTP,
                 policy: OutboundPolicy | None = None):
        self.settings = settings
        self.catalog = catalog
        self.http = http
        self.policy = policy or OutboundPolicy(catalog.providers, settings.allowed_endpoints)
        self._clients: dict[tuple[str | None, str, str | None], ChatClient] = {}

    def for_config(self, llm_config: dict) -> ChatClient:
        endpoint = llm_config.get("model_endpoint") or None
        endpoint_type = llm_config.get("model_endpoint_type") or "openai"
        provider_name = None if endpoint else (llm_config.get("provider_name") or endpoint_type)
        # The policy is fixed for the process, so a config's client (and the check that chose it) is too.
        key = (endpoint, endpoint_type, provider_name)
        client = self._clients.get(key)
        if client is None:
            client = tracing.traced_chat_client(self._build(endpoint, endpoint_type, provider_name))
            if len(self._clients) >= MAX_CLIENTS:
                # An agent may name its own endpoint: without a bound, one client per such agent for ever.
                # Clients are thin wrappers over the shared HTTP client, so dropping the oldest costs a rebuild.
                self._clients.pop(next(iter(self._clients)))
            self._clients[key] = client
        return client

    def _build(self, endpoint: str | None, endpoint_type: str, provider_name: str | None) -> ChatClient:
        if endpoint is not None:
            route = self.policy.route(endpoint, ENDPOINT_FIELD)
            if route.provider is None:
                kind = "anthropic" if endpoint_type == "anthropic" else "openai"
                return self._client(kind, ALLOWLISTED, route.base_url, None, trusted=False)
            return self._for_provider(route.provider)
        provider = self.catalog.provider(provider_name or "") or self.catalog.provider(endpoint_type)
        if provider is None and endpoint_type != "anthropic":
            provider = self.catalog.provider("openai")
        if provider is None:
            raise InvalidInput(f"No model provider '{str(provider_name)[:64]}' is configured on this server")
        return self._for_provider(provider)

    def _for_provider(self, provider: Provider) -> ChatClient:
        return self._client(provider.kind, provider.name, provider.base_url, provider.api_key, trusted=True)

    def _client(self, kind: str, name: str, base_url: str, api_key: str | None, *, trusted: bool) -> ChatClient:
        options = dict(
            provider_name=name,
            base_url=base_url,
            api_key=api_key,
            timeout_s=self.settings.llm_timeout_s,
            max_retries=self.settings.llm_max_retries,
            trusted=trusted,
            total_timeout_s=self.settings.outbound_timeout_s,
            stream_timeout_s=self.settings.outbound_stream_timeout_s,
            max_response_bytes=self.settings.outbound_max_response_bytes,
        )
        if kind == "anthropic":
            from recalld.llm.anthropic import AnthropicChatClient

            return AnthropicChatClient(self.http, **options)
        return OpenAIChatClient(self.http, **options)
