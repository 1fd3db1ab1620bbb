"""Endpoint URLs in the normalised form R20 compares them in, and the prefixes of RECALLD_ALLOWED_ENDPOINTS.

A leaf module (no recalld imports), so settings.py can check the allowlist when it is read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from yarl import URL

MAX_ENDPOINT_CHARS = 1000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# Hosts resolvers read as IPv4 addresses in legacy forms (2130706433, 0x7f.1, 127.1, 0177.0.0.1).
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*")


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
