"""Server-side request forgery guard: a crawl may only reach public addresses.

A URL is refused unless its scheme is http(s) and *every* address its host resolves to is a
public unicast address: loopback, private, link-local (incl. cloud metadata 169.254.169.254),
multicast, reserved, unspecified and carrier-grade NAT ranges are refused, for IPv4, IPv6 and
IPv4-mapped/6to4/NAT64-embedded IPv4. The downloader checks again before every redirect hop.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
_CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """The URL must not be fetched; the message says why."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (the OS resolver, as the HTTP client will use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeURLError(f"cannot resolve {host!r}: {error}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_allow_list(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why the address is not public, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped IPv6 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"embeds {embedded}: {reason}" if reason else None
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in _CARRIER_GRADE_NAT),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, matched in checks if matched), None)


def check_url(url: str, allow: tuple[IPNetwork, ...] = (), resolver: Resolver = resolve_host) -> list[str]:
    """Return the host's vetted addresses, or raise UnsafeURLError saying why the URL is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeURLError(f"malformed URL: {error}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURLError(f"scheme {parts.scheme or '(none)'!r} refused; only http and https")
    host = parts.hostname
    if not host:
        raise UnsafeURLError("URL has no host")
    if parts.username or parts.password:
        raise UnsafeURLError("URLs with credentials are refused")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    addresses = resolver(host, port)
    if not addresses:
        raise UnsafeURLError(f"{host!r} resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text)
        if any(address in network for network in allow if network.version == address.version):
            continue
        reason = address_refusal(address)
        if reason:
            raise UnsafeURLError(f"{host!r} resolves to {address} ({reason}); refused by the SSRF guard")
    return addresses
