"""Server-side request forgery guard: a crawl may only reach public addresses.

A URL is refused unless its scheme is http(s) and *every* address its host resolves to is a
public unicast address: loopback, private, link-local (incl. cloud metadata 169.254.169.254),
multicast, reserved, unspecified and carrier-grade NAT ranges are refused, for IPv4, IPv6 and
IPv4-mapped/6to4/NAT64-embedded IPv4. The downloader checks again before every redirect hop,
and `GuardedNetworkBackend` checks the addresses it actually connects to: a name that resolved to
a public address for the check cannot rebind to a private one for the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore

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
    return vetted_addresses(host, port, allow, resolver)


def vetted_addresses(host: str, port: int, allow: tuple[IPNetwork, ...], resolver: Resolver) -> list[str]:
    """The host's addresses, or UnsafeURLError when any of them is not a public one (nor allowed)."""
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


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connector, resolving the host itself and connecting only to vetted addresses.

    TLS still verifies the certificate against the URL's host name: httpcore passes the origin's
    host to `start_tls`, not the address connected to.
    """

    def __init__(self, allow: tuple[IPNetwork, ...], resolver: Resolver) -> None:
        self.allow, self.resolver = allow, resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await anyio.to_thread.run_sync(vetted_addresses, host, port, self.allow, self.resolver)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # try the host's next address, as the OS resolver path would
        assert failure is not None  # vetted_addresses never returns an empty list
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are refused by the SSRF guard")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
