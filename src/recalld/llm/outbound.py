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

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from yarl import URL

from recalld.errors import InvalidInput
from recalld.llm.catalog import Provider

MAX_ENDPOINT_CHARS = 1000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# Hosts resolvers read as IPv4 addresses in legacy forms (2130706433, 0x7f.1, 127.1, 0177.0.0.1).
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*")


class EndpointNotAllowed(InvalidInput):
    """A tenant-named endpoint that is neither a configured provider's base URL nor allowlisted."""


@dataclass(frozen=True)
class Endpoint:
    """A normalised http(s) endpoint: lower-case scheme and host, explicit port, path without trailing slash."""

    scheme: str
    host: str  # as connected to: IDNA-encoded, IPv6 without brackets
    port: int
    path: str  # "" for the root

    @property
    def url(self) -> str:
        """The endpoint as a URL, with the port only where it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


def parse_endpoint(value: str) -> Endpoint:
    """The normalised form of an endpoint URL; ValueError saying what is wrong with it."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty URL")
    if len(value) > MAX_ENDPOINT_CHARS:
        raise ValueError(f"must be at most {MAX_ENDPOINT_CHARS} characters")
    if _FORBIDDEN_CHARS.search(value):
        raise ValueError("must not contain whitespace, control characters or backslashes")
    try:
        url = URL(value)
    except (ValueError, TypeError) as e:
        raise ValueError("is not a valid URL") from e
    scheme = url.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    if not url.is_absolute() or not url.raw_host:
        raise ValueError("must name a host")
    if url.raw_user is not None or url.raw_password is not None:
        raise ValueError("must not carry credentials")
    if url.raw_query_string or url.raw_fragment or "?" in value or "#" in value:
        raise ValueError("must not carry a query or a fragment")
    host = url.raw_host.lower().rstrip(".")
    if _NUMERIC_HOST.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("must write an IPv4 address in its dotted-decimal form") from None
    port = url.port or _DEFAULT_PORTS[scheme]
    # yarl has already resolved "." and ".." segments (also percent-encoded ones), so the path compared is the
    # path requested.
    return Endpoint(scheme, host, port, url.raw_path.rstrip("/"))


@dataclass(frozen=True)
class AllowedPrefix:
    """One `RECALLD_ALLOWED_ENDPOINTS` entry: a scheme, optionally a host (and port) and a path prefix."""

    scheme: str
    host: str | None
    port: int | None
    path: str

    @classmethod
    def parse(cls, entry: str) -> AllowedPrefix:
        text = entry.strip()
        scheme, sep, rest = text.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in _DEFAULT_PORTS:
            raise ValueError(f"RECALLD_ALLOWED_ENDPOINTS entry {entry!r} must start with http:// or https://")
        if not rest:  # a bare scheme: any public host
            return cls(scheme, None, None, "")
        try:
            endpoint = parse_endpoint(text)
        except ValueError as e:
            raise ValueError(f"RECALLD_ALLOWED_ENDPOINTS entry {entry!r} {e}") from e
        return cls(scheme, endpoint.host, endpoint.port, endpoint.path)

    def matches(self, endpoint: Endpoint) -> bool:
        if endpoint.scheme != self.scheme:
            return False
        if self.host is None:
            return True
        if (endpoint.host, endpoint.port) != (self.host, self.port):
            return False
        # Whole path segments only: "/v1" allows "/v1" and "/v1/x", not "/v10".
        return not self.path or endpoint.path == self.path or endpoint.path.startswith(self.path + "/")


@dataclass(frozen=True)
class Route:
    """Where a call goes: a configured provider (its key is used) or an allowlisted endpoint (no key)."""

    base_url: str
    provider: Provider | None


class OutboundPolicy:
    """The operator's outbound rules: configured providers, the allowlist, and the hosts they name."""

    def __init__(self, providers: Sequence[Provider], allowed_endpoints: Iterable[str] = ()):
        self.providers = list(providers)
        self._by_endpoint: dict[Endpoint, Provider] = {}
        for provider in self.providers:
            self._by_endpoint.setdefault(parse_endpoint(provider.base_url), provider)
        self.allowed = [AllowedPrefix.parse(e) for e in allowed_endpoints if e.strip()]
        trusted = {(e.host, e.port) for e in self._by_endpoint}
        trusted.update((a.host, a.port) for a in self.allowed if a.host is not None and a.port is not None)
        # (host, port) pairs the connection guard lets through whatever they resolve to (ProviderHTTP adds the
        # operator's proxies).
        self.trusted_hosts: frozenset[tuple[str, int]] = frozenset(trusted)

    def provider_at(self, endpoint: Endpoint) -> Provider | None:
        return self._by_endpoint.get(endpoint)

    def route(self, value: str, field: str) -> Route:
        """The route for a tenant-named endpoint; EndpointNotAllowed (400, naming the field) when it has none."""
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
        try:
            endpoint = parse_endpoint(value)
        except ValueError:
            return None
        provider = self._by_endpoint.get(endpoint)
        if provider is not None:
            return provider.shown_base_url
        return value if self._allowlisted(endpoint) else None

    def _allowlisted(self, endpoint: Endpoint) -> bool:
        # A host the guard trusts (a provider's, or one an entry names) is reached only under an entry naming
        # it: a bare "http://" entry means public hosts, so it must not open other paths of an internal one.
        named_only = (endpoint.host, endpoint.port) in self.trusted_hosts
        return any(
            prefix.matches(endpoint) for prefix in self.allowed if prefix.host is not None or not named_only
        )
