"""Which endpoints a tenant may name, and which key (if any) goes there (contract R20).

An endpoint a tenant names (`llm_config.model_endpoint`, `embedding_config.embedding_endpoint`, and later
callback, MCP and fetch_webpage URLs) is one of:

- a configured provider's base URL (compared normalised: scheme, host, port, path without trailing slash):
  then it *is* that provider, spoken in its protocol with its key;
- under a prefix of `RECALLD_ALLOWED_ENDPOINTS`: then it is called with no operator key at all;
- anything else: refused with a 400 naming the field, before anything is stored — and, for rows stored
  before these rules, refused again at call time.

The key is chosen by the endpoint alone: a tenant-given `provider_name`, `provider_type` or
`model_endpoint_type` never picks one. The hosts named here are also the only ones the connection guard
(llm/http.py) lets reach non-public addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from yarl import URL

from recalld.errors import InvalidInput
from recalld.llm.catalog import Provider
from recalld.llm.urls import AllowedPrefix, Endpoint, parse_endpoint

__all__ = ["AllowedPrefix", "Endpoint", "EndpointNotAllowed", "OutboundPolicy", "Route", "parse_endpoint"]

log = logging.getLogger(__name__)
# Endpoints whose tenant-facing form is remembered (a turn's steps ask for it); past this, the memory starts over.
MAX_REMEMBERED = 1024


class EndpointNotAllowed(InvalidInput):
    """A tenant-named endpoint that is neither a configured provider's base URL nor allowlisted."""


@dataclass(frozen=True)
class Route:
    """Where a call goes: a configured provider (its key is used) or an allowlisted endpoint (no key)."""

    base_url: str
    provider: Provider | None


class OutboundPolicy:
    """The operator's outbound rules: configured providers, the allowlist, and the hosts they name."""

    def __init__(self, providers: Sequence[Provider], allowed_endpoints: Iterable[str] = ()):
        self.providers = list(providers)
        # Stored configs carry a provider's base URL exactly as configured: found by the string first, so even a
        # base URL the tenant-facing rules would refuse (credentials in it, say) keeps serving its provider.
        self._by_base_url: dict[str, Provider] = {}
        self._by_endpoint: dict[Endpoint, Provider] = {}
        trusted: set[tuple[str, int]] = set()
        for provider in self.providers:
            self._by_base_url.setdefault(provider.base_url, provider)
            url = URL(provider.base_url)
            if url.raw_host and url.port:
                trusted.add((url.raw_host.lower().rstrip("."), url.port))
            try:
                self._by_endpoint.setdefault(parse_endpoint(provider.base_url), provider)
            except ValueError as e:
                log.warning("provider %s: tenants cannot name its base URL as an endpoint (it %s)", provider.name, e)
        self.allowed = [AllowedPrefix.parse(e) for e in allowed_endpoints if e.strip()]
        self._shown: dict[str, str | None] = {}
        trusted.update((a.host, a.port) for a in self.allowed if a.host is not None and a.port is not None)
        # (host, port) pairs the connection guard lets through whatever they resolve to (ProviderHTTP adds the
        # operator's proxies).
        self.trusted_hosts: frozenset[tuple[str, int]] = frozenset(trusted)

    def route(self, value: str, field: str) -> Route:
        """The route for a tenant-named endpoint; EndpointNotAllowed (400, naming the field) when it has none."""
        provider = self._by_base_url.get(value)
        if provider is not None:
            return Route(provider.base_url, provider)
        try:
            endpoint = parse_endpoint(value)
        except ValueError as e:
            raise EndpointNotAllowed(f"INVALID_ARGUMENT: {field} {e}") from e
        provider = self._by_endpoint.get(endpoint)
        if provider is not None:
            return Route(provider.base_url, provider)
        if self._allowlisted(endpoint):
            return Route(endpoint.url, None)
        raise EndpointNotAllowed(
            f"INVALID_ARGUMENT: {field} is not allowed: an endpoint must be a configured model provider's base "
            "URL or match the operator's allowed endpoints (RECALLD_ALLOWED_ENDPOINTS)"
        )

    def checked(self, value: str | None, field: str) -> str | None:
        """A tenant-given endpoint in its normalised form, once allowed (None and "" stay None)."""
        if value is None or value == "":
            return None
        return self.route(value, field).base_url

    def shown(self, value: str | None) -> str | None:
        """An endpoint as tenants see it: a well-known public provider URL or an allowlisted one they set
        themselves; any other provider base URL (an internal vLLM host, say) reads as null."""
        if not value:
            return None
        if value not in self._shown:  # asked on every step a turn commits: remember the answer
            if len(self._shown) >= MAX_REMEMBERED:
                self._shown.clear()
            self._shown[value] = self._shown_now(value)
        return self._shown[value]

    def _shown_now(self, value: str) -> str | None:
        provider = self._by_base_url.get(value)
        if provider is not None:
            return provider.shown_base_url
        try:
            endpoint = parse_endpoint(value)
        except ValueError:
            return None
        provider = self._by_endpoint.get(endpoint)
        if provider is not None:
            return provider.shown_base_url
        return value if self._allowlisted(endpoint) else None

    # --- a custom tool's network (R23): the allowlist alone, never a provider ---------------------------------

    @property
    def named_hosts(self) -> frozenset[tuple[str, int]]:
        """(host, port) pairs an allowlist entry names: the only non-public ones a tool may reach."""
        return frozenset((a.host, a.port) for a in self.allowed if a.host is not None and a.port is not None)

    def allows_tool_url(self, endpoint: Endpoint) -> bool:
        """A tool's plain-HTTP request: its URL (without query) must be under an allowlist entry."""
        return self._allowlisted(endpoint)

    def allows_tool_tunnel(self, host: str, port: int) -> bool:
        """A tool's CONNECT: an https entry naming this host:port (its path cannot be seen inside TLS), or a bare
        "https://" entry for a host no entry names."""
        host = host.lower().rstrip(".")
        named = (host, port) in self.trusted_hosts
        return any(
            a.scheme == "https" and ((a.host, a.port) == (host, port) or (a.host is None and not named))
            for a in self.allowed
        )

    def _allowlisted(self, endpoint: Endpoint) -> bool:
        # A host the guard trusts (a provider's, or one an entry names) is reached only under an entry naming
        # it: a bare "http://" entry means public hosts, so it must not open other paths of an internal one.
        named_only = (endpoint.host, endpoint.port) in self.trusted_hosts
        return any(
            prefix.matches(endpoint) for prefix in self.allowed if prefix.host is not None or not named_only
        )
