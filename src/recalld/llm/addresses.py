"""Which IP addresses a call made on a tenant's behalf may connect to (contract R20).

Only public unicast addresses: never loopback, private, shared (CGNAT), link-local, multicast, reserved,
unspecified or documentation ranges, nor the cloud metadata services (169.254.169.254, fd00:ec2::254,
100.100.100.200, all inside those ranges). IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64,
Teredo) are judged by that address too, so `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
"""

from __future__ import annotations

import functools
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Listed explicitly although the ranges above already hold them: the addresses an SSRF goes for first.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for, where it is one of the forms that carry one."""
    embedded = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def _public(address: IPAddress) -> bool:
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in METADATA_ADDRESSES
    )


@functools.lru_cache(maxsize=4096)  # pure: an address's class never changes, and a turn reuses few addresses
def is_public_address(text: str) -> bool:
    """True when `text` is a public unicast IP address; anything unparsable is not."""
    if "%" in text:  # a zone index only exists on link-local and other non-global scopes
        return False
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if not _public(address):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        return all(_public(v4) for v4 in _embedded_ipv4(address))
    return True
