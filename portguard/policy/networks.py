"""Addresses and CIDRs as integers: fast parsing and an O(n log n) collapse for big sets.

`ipaddress.collapse_addresses` takes about 22 s for a million addresses; sorting (start,
prefix) integers and merging intervals takes about one. Parsed networks are kept as small
tuples until the collapse, and a network that survives it unchanged is reused, not rebuilt.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from portguard.model import Network

__all__ = [
    "NetworkParts",
    "NotANetwork",
    "ParsedNetwork",
    "collapse",
    "collapse_parts",
    "parse_network",
    "subnet_of",
    "to_network",
]

# (version, first address as an int, prefix length)
NetworkParts = tuple[int, int, int]
_Item = tuple[int, int, int, Network]  # parts and the object to reuse
_BITS = {4: 32, 6: 128}
_MAX_PREFIX_DIGITS = 3


class NotANetwork(ValueError):
    """The text is no IP address or CIDR network."""


@dataclass(frozen=True)
class ParsedNetwork:
    """A parsed address or CIDR and whether host bits were set (they are cleared in `parts`)."""

    parts: NetworkParts
    host_bits: bool


def parse_network(text: str) -> ParsedNetwork:
    """Parse "ADDR" or "ADDR/PREFIX" (IPv4 or IPv6) as ipaddress.ip_network would, non-strictly."""
    address, slash, prefix_text = text.partition("/")
    version = 4
    try:
        ip: int = _dotted_quad(address)
    except ValueError:
        version = 6
        try:
            ip = int(ipaddress.IPv6Address(address))
        except ValueError:
            raise NotANetwork(text) from None
    bits = _BITS[version]
    if not slash:
        prefix = bits
    elif prefix_text.isascii() and prefix_text.isdigit() and len(prefix_text) <= _MAX_PREFIX_DIGITS:
        prefix = int(prefix_text)
        if prefix > bits:
            raise NotANetwork(text)
    else:  # a netmask or hostmask ("/255.255.0.0"), which ipaddress also reads for IPv4
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise NotANetwork(text) from None
        prefix = network.prefixlen
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    start = ip & mask
    return ParsedNetwork((version, start, prefix), start != ip)


def _dotted_quad(address: str) -> int:
    """An IPv4 address as ipaddress reads it (four decimal octets, no leading zeros), faster."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, UnicodeError):  # ValueError (an embedded NUL) passes as itself
        raise ValueError(address) from None


def to_network(parts: NetworkParts) -> Network:
    """The ipaddress network of `parts` (host bits already clear)."""
    version, start, prefix = parts
    if version == 4:
        return ipaddress.IPv4Network((start, prefix))
    return ipaddress.IPv6Network((start, prefix))


def collapse(networks: Iterable[Network]) -> tuple[Network, ...]:
    """Like ipaddress.collapse_addresses, IPv4 first then IPv6, reusing unchanged objects."""
    items = [(n.version, int(n.network_address), n.prefixlen, n) for n in networks]
    items.sort(key=lambda item: item[:3])
    return _collapse_sorted(items)


def collapse_parts(parts: Iterable[NetworkParts]) -> tuple[Network, ...]:
    """The fewest CIDRs covering exactly the union of `parts`, IPv4 first, each sorted."""
    return _collapse_sorted(sorted(parts))


def _collapse_sorted(items: Sequence[NetworkParts | _Item]) -> tuple[Network, ...]:
    """Merge sorted (version, start, prefix[, network]) items into maximal runs, then CIDRs."""
    out: list[Network] = []
    first: NetworkParts | _Item | None = None  # the widest network at the run's lowest start
    single = True  # the run is `first` alone (or networks inside it)
    version = high = -1
    for item in items:
        item_version, start, prefix = item[0], item[1], item[2]
        end = start + (1 << (_BITS[item_version] - prefix)) - 1
        if item_version == version and start <= high + 1:
            if end > high:
                high = end
                single = False
            continue
        if first is not None:
            _flush(first, single, high, out)
        first, single, version, high = item, True, item_version, end
    if first is not None:
        _flush(first, single, high, out)
    return tuple(out)


def _flush(first: NetworkParts | _Item, single: bool, high: int, out: list[Network]) -> None:
    """Emit the CIDRs of one maximal run from `first`'s start to `high`."""
    version, low = first[0], first[1]
    if single:
        network = first[3] if len(first) == 4 else None
        out.append(network if network is not None else to_network((version, low, first[2])))
    elif version == 4:
        out.extend(
            ipaddress.summarize_address_range(
                ipaddress.IPv4Address(low), ipaddress.IPv4Address(high)
            )
        )
    else:
        out.extend(
            ipaddress.summarize_address_range(
                ipaddress.IPv6Address(low), ipaddress.IPv6Address(high)
            )
        )


def subnet_of(inner: Network, outer: Network) -> bool:
    """Whether `inner` lies inside `outer` (False across IP families)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
