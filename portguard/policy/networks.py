"""Addresses and CIDRs as integers: fast parsing and an O(n log n) collapse for big sets.

`ipaddress.collapse_addresses` takes about 22 s for a million addresses; sorting integer
keys (start << 8 | prefix) and merging intervals takes a fraction of one. A collapsed list
is a NetworkSet: the keys, with ipaddress objects made only for whoever iterates it; the
loader, layout and nft renderer read its integers (network_parts, network_texts, union).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import overload

from portguard.model import Network

__all__ = [
    "NetworkParts",
    "NetworkSet",
    "NotANetwork",
    "ParsedNetwork",
    "collapse",
    "collapse_keys",
    "collapse_parts",
    "contains",
    "host_routes",
    "in_family",
    "network_parts",
    "network_texts",
    "parse_network",
    "subnet_of",
    "to_network",
]

# (version, first address as an int, prefix length)
NetworkParts = tuple[int, int, int]
_BITS = {4: 32, 6: 128}
FAMILY_V4 = 4
_PREFIX_BITS = 8  # a key is start << 8 | prefix (a prefix is at most 128)
_PREFIX_MASK = (1 << _PREFIX_BITS) - 1
_KEY_BYTES = 8  # an IPv4 key in NetworkSet's array("Q")
_EMBEDDED_V4_BITS = 32
_MAPPED_V4_TAG = 0xFFFF
_MAX_PREFIX_DIGITS = 3
_DECIMAL = tuple(str(n) for n in range(256))  # an octet or prefix as text, by table


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


class NetworkSet(Sequence[Network]):
    """Collapsed networks (IPv4 first, each family sorted) held as integers, not objects.

    Each CIDR is one key, `start << 8 | prefix`; an ipaddress object is made only when an
    item is asked for, so a million-address set costs megabytes, not hundreds of them.
    It equals the tuple of the same networks (and hashes like it). Build one with
    `collapse`, `collapse_parts`, `collapse_keys` or `union`.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, v4: Iterable[int] = (), v6: Iterable[int] = ()) -> None:
        """Wrap keys already in collapse's form (sorted, disjoint, maximal); see collapse_keys."""
        self._v4 = array("Q", v4)
        self._v6 = tuple(v6)

    def __len__(self) -> int:
        return len(self._v4) + len(self._v6)

    @overload
    def __getitem__(self, index: int) -> Network: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Network, ...]: ...

    def __getitem__(self, index: int | slice) -> Network | tuple[Network, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        count = len(self._v4)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("NetworkSet index out of range")
        if index < count:
            key = self._v4[index]
            return ipaddress.IPv4Network((key >> _PREFIX_BITS, key & _PREFIX_MASK))
        key = self._v6[index - count]
        return ipaddress.IPv6Network((key >> _PREFIX_BITS, key & _PREFIX_MASK))

    def __iter__(self) -> Iterator[Network]:
        for key in self._v4:
            yield ipaddress.IPv4Network((key >> _PREFIX_BITS, key & _PREFIX_MASK))
        for key in self._v6:
            yield ipaddress.IPv6Network((key >> _PREFIX_BITS, key & _PREFIX_MASK))

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, NetworkSet):
            return self._v4 == other._v4 and self._v6 == other._v6
        if isinstance(other, tuple):
            return len(other) == len(self) and tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # as the equal tuple hashes

    def __repr__(self) -> str:
        return repr(tuple(self))  # as the equal tuple writes itself

    def keys(self, family: int) -> Sequence[int]:
        """The `start << 8 | prefix` keys of one IP family (4 or 6), sorted."""
        return self._v4 if family == FAMILY_V4 else self._v6

    def host_routes(self) -> Iterator[tuple[int, int]]:
        """(version, address) of each /32 and /128, found in IPv4 by a byte search."""
        low = 0 if sys.byteorder == "little" else _KEY_BYTES - 1  # each key's prefix byte
        prefixes = memoryview(self._v4).cast("B")[low::_KEY_BYTES].tobytes()
        at = prefixes.find(_BITS[4])
        while at >= 0:
            yield 4, self._v4[at] >> _PREFIX_BITS
            at = prefixes.find(_BITS[4], at + 1)
        for key in self._v6:
            if key & _PREFIX_MASK == _BITS[6]:
                yield 6, key >> _PREFIX_BITS

    def family(self, family: int) -> NetworkSet:
        """The networks of one IP family (4 or 6)."""
        return NetworkSet(self._v4, ()) if family == FAMILY_V4 else NetworkSet((), self._v6)


def collapse_keys(v4: list[int], v6: list[int]) -> NetworkSet:
    """The fewest CIDRs covering the union of `start << 8 | prefix` keys (the lists are sorted
    in place)."""
    return NetworkSet(_merge(v4, _BITS[4]), _merge(v6, _BITS[6]))


def collapse(networks: Iterable[Network]) -> NetworkSet:
    """Like ipaddress.collapse_addresses, IPv4 first then IPv6."""
    if isinstance(networks, NetworkSet):
        return networks
    return union((tuple(networks),))


def collapse_parts(parts: Iterable[NetworkParts]) -> NetworkSet:
    """The fewest CIDRs covering exactly the union of `parts`, IPv4 first, each sorted."""
    keys: dict[int, list[int]] = {4: [], 6: []}
    for version, start, prefix in parts:
        keys[version].append(start << _PREFIX_BITS | prefix)
    return collapse_keys(keys[4], keys[6])


def union(groups: Iterable[Sequence[Network]]) -> NetworkSet:
    """The collapsed union of several network lists (NetworkSets are read as integers)."""
    listed = list(groups)
    if len(listed) == 1 and isinstance(listed[0], NetworkSet):
        return listed[0]
    v4: list[int] = []
    v6: list[int] = []
    for group in listed:
        if isinstance(group, NetworkSet):
            v4.extend(group.keys(4))
            v6.extend(group.keys(6))
            continue
        for network in group:
            key = int(network.network_address) << _PREFIX_BITS | network.prefixlen
            (v4 if network.version == FAMILY_V4 else v6).append(key)
    return collapse_keys(v4, v6)


def network_parts(networks: Iterable[Network]) -> Iterator[NetworkParts]:
    """(version, start, prefix) of each network, without making objects for a NetworkSet."""
    if isinstance(networks, NetworkSet):
        for family in (4, 6):
            for key in networks.keys(family):
                yield family, key >> _PREFIX_BITS, key & _PREFIX_MASK
        return
    for network in networks:
        yield network.version, int(network.network_address), network.prefixlen


def host_routes(networks: Sequence[Network]) -> Iterator[tuple[int, int]]:
    """(version, address) of each single-address network (/32, /128), in order.

    A NetworkSet's IPv4 prefixes are found by a byte search over its keys' low bytes, so a
    million networks with no host among them cost no Python loop.
    """
    if not isinstance(networks, NetworkSet):
        for version, start, prefix in network_parts(networks):
            if prefix == _BITS[version]:
                yield version, start
        return
    yield from networks.host_routes()


def contains(networks: Sequence[Network], address: IPv4Address | IPv6Address) -> bool:
    """Whether one of `networks` holds `address`: a bisection into a NetworkSet's keys (they
    are sorted and disjoint, so only the last network starting at or before it can)."""
    if not isinstance(networks, NetworkSet):
        return any(address.version == n.version and address in n for n in networks)
    keys = networks.keys(address.version)
    value = int(address)
    at = bisect_right(keys, value << _PREFIX_BITS | _PREFIX_MASK) - 1
    if at < 0:
        return False
    key = keys[at]
    bits = _BITS[address.version]
    return value < (key >> _PREFIX_BITS) + (1 << (bits - (key & _PREFIX_MASK)))


def in_family(networks: Sequence[Network], family: int) -> Sequence[Network]:
    """The networks of one IP family (4 or 6), in their order."""
    if isinstance(networks, NetworkSet):
        return networks.family(family)
    return tuple(n for n in networks if n.version == family)


def network_texts(networks: Sequence[Network]) -> list[str]:
    """Each network as str(network) writes it ("192.0.2.0/24", "2001:db8::/32")."""
    if not isinstance(networks, NetworkSet):
        return [str(network) for network in networks]
    o = _DECIMAL  # a v4 key's bytes, high to low, are the four octets, then the prefix
    texts = [
        f"{o[key >> 32]}.{o[key >> 24 & 255]}.{o[key >> 16 & 255]}.{o[key >> 8 & 255]}"
        f"/{o[key & 255]}"
        for key in networks.keys(4)
    ]
    texts.extend(
        f"{_ipv6_text(key >> _PREFIX_BITS)}/{key & _PREFIX_MASK}" for key in networks.keys(6)
    )
    return texts


def _ipv6_text(address: int) -> str:
    """An IPv6 address as ipaddress writes it (RFC 5952); glibc's inet_ntop agrees except on
    the IPv4-compatible and IPv4-mapped ranges, which it writes in dotted form."""
    if address >> _EMBEDDED_V4_BITS in (0, _MAPPED_V4_TAG):
        return str(ipaddress.IPv6Address(address))
    return socket.inet_ntop(socket.AF_INET6, address.to_bytes(16, "big"))


def _merge(keys: list[int], bits: int) -> list[int]:
    """Sort `keys` and merge them into maximal runs, each written as the fewest CIDR keys."""
    keys.sort()
    out: list[int] = []
    append = out.append
    run = -1  # the widest key at the run's lowest start
    high = -2  # the run's last address
    single = True  # the run is `run` alone (or networks inside it)
    for key in keys:
        start = key >> _PREFIX_BITS
        end = start + (1 << (bits - (key & _PREFIX_MASK))) - 1
        if start <= high + 1:
            if end > high:
                high = end
                single = False
            continue
        if run >= 0:
            if single:
                append(run)
            else:
                _summarize(run >> _PREFIX_BITS, high, bits, out)
        run, high, single = key, end, True
    if run >= 0:
        if single:
            append(run)
        else:
            _summarize(run >> _PREFIX_BITS, high, bits, out)
    return out


def _summarize(low: int, high: int, bits: int, out: list[int]) -> None:
    """Append the fewest CIDR keys covering low..high, ascending (summarize_address_range)."""
    while low <= high:
        size = (high - low + 1).bit_length() - 1
        if low:
            size = min(size, (low & -low).bit_length() - 1)
        out.append(low << _PREFIX_BITS | (bits - size))
        low += 1 << size


def subnet_of(inner: Network, outer: Network) -> bool:
    """Whether `inner` lies inside `outer` (False across IP families)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
