"""Which addresses outbound requests (webhooks) may reach.

A webhook step's URL is written by whoever defines journeys; without a fence it could
make the worker POST users' tags to services only the worker's network reaches
(loopback, a private network, a cloud metadata address). So only global unicast
addresses are reached, unless an entry of ``REACH_WEBHOOK_ALLOW`` lists the address
(and port). The check is on the addresses a host name resolves to, and the connection
goes to the checked address: a DNS answer that changes between check and connect
(rebinding) cannot swap it.

Refused: loopback, private (RFC 1918, ``fc00::/7``), link-local (``169.254.0.0/16``,
``fe80::/10``: cloud metadata), shared (``100.64.0.0/10``), documentation and other
special-purpose ranges, multicast, unspecified (``0.0.0.0``, ``::``), and IPv6 forms
that embed such an IPv4 address (IPv4-mapped, NAT64, 6to4).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from schemas.journey_nodes import WebhookNode
from schemas.journeys import JourneyDefinition

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_MAX_ENTRIES = 256


class DestinationRefused(OSError):
    """An outbound request to an address outside the fence."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    network: Network
    port: int | None  # None: every port

    def admits(self, address: Address, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def parse_allow_list(text: str) -> tuple[AllowEntry, ...]:
    """``127.0.0.1:9000,10.0.0.0/8,[::1]:8080,fd00::/8`` -> entries; raises ValueError
    naming the entry it cannot read."""
    entries = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        entries.append(_entry(part))
    if len(entries) > _MAX_ENTRIES:
        raise ValueError(f"at most {_MAX_ENTRIES} entries")
    return tuple(entries)


def _entry(text: str) -> AllowEntry:
    host, port = text, None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 address with a port as [::1]:8080")
        port = _port(text, rest[1:]) if rest else None
    elif text.count(":") == 1:  # IPv4 (or IPv4 network) with a port
        host, _, number = text.partition(":")
        port = _port(text, number)
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r}: not an IP address or network (e.g. 127.0.0.1:9000, 10.0.0.0/8)"
        ) from None
    return AllowEntry(network, port)


def _port(entry: str, number: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(number)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def is_public(address: Address) -> bool:
    """A global unicast address (and, for IPv6 forms that carry an IPv4 address, that
    address is one too)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def admitted(address: Address, port: int, allow: Iterable[AllowEntry]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A mapped address reaches the IPv4 one: match the allow-list on that.
        mapped = address.ipv4_mapped
        if any(entry.admits(mapped, port) for entry in allow):
            return True
    return is_public(address) or any(entry.admits(address, port) for entry in allow)


def parse_address(host: str) -> Address | None:
    """The address of a literal host (``[::1]`` or ``127.0.0.1``), None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check(host: str, port: int, allow: Iterable[AllowEntry]) -> None:
    """Raise DestinationRefused for a literal address outside the fence (names are
    checked by the resolver, on what they resolve to)."""
    address = parse_address(host)
    if address is not None and not admitted(address, port, allow):
        raise DestinationRefused(refusal(host))


def refusal(host: str) -> str:
    # Said before any connection is tried, and the same for every refused address:
    # it tells nothing about what listens there.
    return f"destination {host} is not a public address (see REACH_WEBHOOK_ALLOW)"


def webhook_refusal(definitions: Iterable[JourneyDefinition], allow: Iterable[AllowEntry]) -> str:
    """Why the first webhook step to a literal address outside the fence is refused
    ("" for none): refused when defined, not only when it would send. A host name is
    checked when the step sends, on what it then resolves to."""
    allowed = tuple(allow)
    for definition in definitions:
        for node in definition.nodes:
            if not isinstance(node, WebhookNode):
                continue
            try:
                url = URL(node.url)
                if url.host is not None:
                    check(url.host, url.port or 0, allowed)
            except ValueError:  # not a URL: the definition's own validation says so
                continue
            except DestinationRefused as refused:
                return f"journey '{definition.id}' step '{node.id}': webhook {refused}"
    return ""


class FencedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses inside the fence; a name with none
    left raises DestinationRefused (an OSError: aiohttp raises it as a connector
    error whose ``os_error`` it is)."""

    def __init__(self, allow: Iterable[AllowEntry], inner: AbstractResolver | None = None) -> None:
        self.allow = tuple(allow)
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = []
        for result in found:
            address = parse_address(result["host"])
            if address is not None and admitted(address, result["port"], self.allow):
                kept.append(result)
        if not kept:
            raise DestinationRefused(refusal(host))
        return kept

    async def close(self) -> None:
        await self._inner.close()
