"""The fence of outbound requests: which addresses a webhook may reach."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from streams.outbound import (
    AllowEntry,
    DestinationRefused,
    FencedResolver,
    admitted,
    check,
    is_public,
    parse_allow_list,
)

REFUSED = [
    "127.0.0.1",
    "127.5.6.7",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "fc00::1",
    "fd12:3456::1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "0.0.0.0",
    "::",
    "100.64.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 form of 127.0.0.1
    "255.255.255.255",
]
PUBLIC = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("text", REFUSED)
def test_internal_addresses_are_refused(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert not is_public(address)
    assert not admitted(address, 80, ())
    with pytest.raises(DestinationRefused, match="is not a public address"):
        check(text, 80, ())


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    assert admitted(ipaddress.ip_address(text), 443, ())
    check(text, 443, ())


def test_names_are_left_to_the_resolver() -> None:
    check("hooks.example.com", 443, ())


def test_the_allow_list_admits_addresses_networks_and_ports() -> None:
    allow = parse_allow_list(" 127.0.0.1:9000, 10.0.0.0/8 ,[::1]:8080,fd00::/8,")
    assert allow == (
        AllowEntry(ipaddress.ip_network("127.0.0.1/32"), 9000),
        AllowEntry(ipaddress.ip_network("10.0.0.0/8"), None),
        AllowEntry(ipaddress.ip_network("::1/128"), 8080),
        AllowEntry(ipaddress.ip_network("fd00::/8"), None),
    )
    ip = ipaddress.ip_address
    assert admitted(ip("127.0.0.1"), 9000, allow)
    assert not admitted(ip("127.0.0.1"), 9001, allow)
    assert admitted(ip("::ffff:127.0.0.1"), 9000, allow)  # the same address
    assert admitted(ip("10.200.0.1"), 1, allow)
    assert admitted(ip("::1"), 8080, allow)
    assert not admitted(ip("::1"), 80, allow)
    assert not admitted(ip("169.254.169.254"), 80, allow)
    assert parse_allow_list("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost:9000", "not an IP address"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("[::1", "IPv6 address with a port"),
        ("10.0.0.0/33", "not an IP address"),
    ],
)
def test_unreadable_allow_entries_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_allow_list(f"127.0.0.1,{text}")


class Answers(AbstractResolver):
    """A DNS that answers with the given addresses (nothing is connected to)."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=found,
                port=port,
                family=socket.AF_INET6 if ":" in found else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for found in self.hosts
        ]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_internal_addresses_is_refused() -> None:
    resolver = FencedResolver((), Answers("169.254.169.254", "fe80::1%1", "10.0.0.7"))
    with pytest.raises(DestinationRefused, match=r"metadata\.internal is not a public"):
        await resolver.resolve("metadata.internal", 80)


async def test_only_the_public_answers_of_a_name_are_connected_to() -> None:
    resolver = FencedResolver((), Answers("127.0.0.1", "93.184.216.34", "::1"))
    kept = await resolver.resolve("rebinding.example", 443)
    assert [found["host"] for found in kept] == ["93.184.216.34"]


async def test_the_resolver_honours_the_allow_list() -> None:
    resolver = FencedResolver(parse_allow_list("10.0.0.0/8"), Answers("10.1.1.1"))
    [found] = await resolver.resolve("hooks.corp", 8080)
    assert (found["host"], found["port"]) == ("10.1.1.1", 8080)
