"""Whether `recalld serve` may listen where it was asked to without authentication (contract R21)."""

from __future__ import annotations

import ipaddress

from recalld.settings import Settings


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; anything else (0.0.0.0, ::, a hostname, an interface address) is not."""
    host = host.strip().strip("[]")
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unauthenticated_refusal(host: str, settings: Settings) -> str | None:
    """Why serving unauthenticated on `host` is refused, or None when it is allowed."""
    if settings.auth != "off" or settings.allow_unauthenticated or is_loopback(host):
        return None
    return (
        f"refusing to serve without authentication on {host}: anyone who can reach this address would act as the "
        "default organization. Set RECALLD_AUTH=required (and create keys with `recalld keys create --org NAME`), "
        "listen on a loopback address (--host 127.0.0.1), or set RECALLD_ALLOW_UNAUTHENTICATED=true to accept "
        "the risk."
    )
