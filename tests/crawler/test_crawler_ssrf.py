"""The SSRF guard on its own: what resolves where, and which schemes and addresses are refused."""

from __future__ import annotations

import re

import pytest

from services.crawler.ssrf import UnsafeURLError, check_url, parse_allow_list, resolve_host


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.7", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "scoped IPv6 address"),
        ("fc00::5", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1: loopback"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254: link-local"),
        ("2002:a00:1::1", "embeds 10.0.0.1: private"),
        ("64:ff9b::c0a8:101", "embeds 192.168.1.1: private"),
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    with pytest.raises(UnsafeURLError, match=f"resolves to .*\\({why}\\)"):
        check_url("http://images.example/a.png", resolver=resolving_to(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:84e5", "::ffff:93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert check_url("https://images.example/a.png", resolver=resolving_to(address)) == [address]


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UnsafeURLError, match=r"10\.0\.0\.1"):
        check_url("http://images.example/", resolver=resolving_to("93.184.216.34", "10.0.0.1"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file' refused"),
        ("gopher://images.example/", "scheme 'gopher' refused"),
        ("ftp://images.example/a.png", "scheme 'ftp' refused"),
        ("//images.example/a.png", "scheme '(none)' refused"),
        ("http:///a.png", "no host"),
        ("http://user:secret@images.example/", "credentials"),
        ("http://images.example:99999/", "malformed URL"),
    ],
)
def test_bad_urls_are_refused_before_resolving(url: str, message: str) -> None:
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("must not resolve")

    with pytest.raises(UnsafeURLError, match=re.escape(message)):
        check_url(url, resolver=never)


@pytest.mark.parametrize("url", ["http://localhost/", "http://2130706433/", "http://0x7f.1/", "http://[::1]/"])
def test_real_resolver_sees_through_loopback_spellings(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url(url, resolver=resolve_host)


def test_allow_list_exempts_only_the_named_network() -> None:
    allow = parse_allow_list(["127.0.0.1/32"])
    assert check_url("http://127.0.0.1:8080/a.png", allow) == ["127.0.0.1"]
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.2"):
        check_url("http://127.0.0.2:8080/a.png", allow)
    with pytest.raises(UnsafeURLError, match="::1"):
        check_url("http://[::1]:8080/a.png", allow)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeURLError, match="cannot resolve"):
        check_url("http://no-such-host.invalid/", resolver=resolve_host)
