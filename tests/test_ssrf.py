from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from relay.core.hosts import host_matches
from relay.outbound.ssrf import Blocked, GuardedResolver, address_allowed, check_url


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "240.0.0.1",
        "2002:7f00:1::",
        # what Python 3.11's ipaddress counts global: site-local (deprecated), the 6to4 relay anycast, the
        # 2024 documentation prefix, and private addresses in the IPv4-mapped, -compatible, 6to4 and NAT64 forms
        "fec0::1",
        "feff:ffff::1",
        "192.88.99.1",
        "2002:c058:6301::",
        "3fff::1",
        "::ffff:100.64.0.1",
        "::10.0.0.1",
        "::ffff:0:7f00:1",
        "2002:a9fe:a9fe::",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::100.64.0.1",
        "64:ff9b:1::808:808",
        "2001::1",
    ],
)
def test_internal_addresses_refused(ip: str) -> None:
    assert not address_allowed(ip)


@pytest.mark.parametrize(
    "ip", ["20.190.151.68", "13.107.42.14", "2603:1036::1", "::ffff:20.190.151.68", "64:ff9b::20.190.151.68"]
)
def test_public_addresses_allowed(ip: str) -> None:
    assert address_allowed(ip)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://x",
        "http://127.0.0.1/",
        "http://[::1]:80/",
        "http://169.254.169.254/",
        "http://[fec0::1]:8080/h",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://user:pw@graph.microsoft.com/",
        "http:///nohost",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(Blocked):
        check_url(url, ())


def test_trusted_hosts_may_be_internal() -> None:
    check_url("http://127.0.0.1:8080/hook", ("127.0.0.1",))
    check_url("https://graph.microsoft.com/v1.0", ())


def test_host_patterns() -> None:
    assert host_matches("contoso.sharepoint.com", ("*.sharepoint.com",))
    assert host_matches("Contoso.SharePoint.com.", ("*.sharepoint.com",))
    assert not host_matches("sharepoint.com.evil.io", ("*.sharepoint.com",))
    assert not host_matches("evilsharepoint.com", ("*.sharepoint.com",))
    assert host_matches("api.onedrive.com", ("api.onedrive.com",))


async def test_resolver_drops_internal_answers() -> None:
    resolver = GuardedResolver(())
    with pytest.raises(OSError, match=r"loopback.*RELAY_INTERNAL_HOSTS"):
        await resolver.resolve("localhost", 80)
    trusting = GuardedResolver(("localhost",))
    assert await trusting.resolve("localhost", 80)
    await resolver.close()
    await trusting.close()


class FixedAnswers(AbstractResolver):
    """A resolver that answers what a rebinding DNS server would: a public and a private address."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": ip, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for ip in ("20.190.151.68", "10.0.0.5", "169.254.169.254")
        ]

    async def close(self) -> None:
        return None


async def test_only_the_checked_public_answers_are_connected_to() -> None:
    resolver = GuardedResolver((), inner=FixedAnswers())
    answers = await resolver.resolve("rebind.example", 443)
    assert [a["host"] for a in answers] == ["20.190.151.68"]


def test_a_parsed_url_is_checked_as_its_text_is() -> None:
    """A URL given parsed (a monitor's) is checked once and remembered, as one given as text: refused each time."""
    refused = URL("http://169.254.169.254/latest/meta-data")
    for _ in range(2):
        with pytest.raises(Blocked, match="RELAY_INTERNAL_HOSTS"):
            check_url(refused, ())
    allowed = URL("http://127.0.0.1:8080/monitor/1")
    assert check_url(allowed, ("127.0.0.1",)) == allowed
    with pytest.raises(Blocked):  # the same URL, other trusted hosts: checked again
        check_url(allowed, ())
