"""Lint: legal but suspicious policy constructs, as located warnings (never errors).

Every check is O(n log n) in the entries and addresses: overlaps are found by one sweep over
the ports per (interface, protocol), not by comparing every pair of entries.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from portguard.errors import Location
from portguard.model import (
    MAX_PORT,
    AllowRule,
    ForwardedMode,
    IcmpMode,
    LintWarning,
    Policy,
    PortRange,
    Proto,
)
from portguard.policy.deny_lint import deny_warnings
from portguard.policy.networks import host_routes, in_family, network_parts

__all__ = [
    "FORWARDED_IGNORE_MESSAGE",
    "IPV4_MAPPED",
    "MAX_WARNINGS_PER_KIND",
    "TROJAN_PORTS",
    "WarningCollector",
    "interfaces_meet",
    "lint_kinds",
    "lint_policy",
]

# Ports long used by well-known trojans and backdoors (Back Orifice, NetBus, SubSeven, ...).
TROJAN_PORTS: tuple[tuple[int, str], ...] = (
    (1243, "SubSeven"),
    (1999, "BackDoor"),
    (2140, "Deep Throat"),
    (3150, "Deep Throat"),
    (6711, "SubSeven"),
    (6776, "SubSeven"),
    (12345, "NetBus"),
    (12346, "NetBus"),
    (20034, "NetBus 2 Pro"),
    (27374, "SubSeven"),
    (27665, "Trin00"),
    (31335, "Trin00"),
    (31337, "Back Orifice"),
    (31338, "Back Orifice"),
    (54320, "Back Orifice 2000"),
    (54321, "Back Orifice 2000"),
    (65000, "Devil"),
)
ALL_PORTS = PortRange(1, MAX_PORT)
IPV4_MAPPED = IPv6Network("::ffff:0:0/96")  # ::ffff:a.b.c.d; the kernel sees IPv4 as IPv4
_MAPPED_SHIFT = IPV4_MAPPED.max_prefixlen - IPV4_MAPPED.prefixlen
_MAPPED_HIGH = int(IPV4_MAPPED.network_address) >> _MAPPED_SHIFT
MAX_WARNINGS_PER_KIND = 50
SINGLE_HOSTS_NAMED = 3


@dataclass
class WarningCollector:
    """Keeps the first `per_kind` warnings of each kind and counts the rest (one per load)."""

    per_kind: int = MAX_WARNINGS_PER_KIND
    kept: list[LintWarning] = field(default_factory=list)
    omitted: int = 0
    _counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, warning: LintWarning) -> None:
        """Keep `warning` unless `per_kind` of its kind are kept already; then count it."""
        if self._keeps(kind):
            self.kept.append(warning)

    def add_lazily(self, kind: str, location: Location, message: Callable[[], str]) -> None:
        """Like `add`, but the message is made only if the warning is kept."""
        if self._keeps(kind):
            self.kept.append(LintWarning(location, message()))

    def _keeps(self, kind: str) -> bool:
        """Count one more warning of `kind`; whether it is among the first `per_kind`."""
        seen = self._counts.get(kind, 0)
        self._counts[kind] = seen + 1
        if seen < self.per_kind:
            return True
        self.omitted += 1
        return False


def lint_policy(policy: Policy) -> tuple[LintWarning, ...]:
    """Every lint warning for `policy`, in file order."""
    return tuple(warning for _, warning in lint_kinds(policy))


FORWARDED_IGNORE_MESSAGE = (
    "published ports (Docker -p, podman, libvirt, kube-proxy DNAT) are reachable whatever"
    " the allow list says (forwarded: ignore)"
)


def lint_kinds(
    policy: Policy, key_locations: Mapping[str, Location] | None = None
) -> list[tuple[str, LintWarning]]:
    """Every lint warning with its kind ("overlap", "trojan", ...), in file order.

    `key_locations` maps top-level keys to where they are in the file (the loader knows);
    a warning about a key without a known location points at line 1.
    """
    found: list[tuple[str, LintWarning]] = []
    keys = key_locations or {}
    if policy.forwarded is ForwardedMode.IGNORE:
        location = keys.get("forwarded", Location(policy.path, 1, 1))
        found.append(("forwarded", LintWarning(location, FORWARDED_IGNORE_MESSAGE)))
    if policy.icmp is IcmpMode.NONE:
        location = keys.get("icmp", Location(policy.path, 1, 1))
        message = "icmp: none also blocks IPv6 neighbour discovery; IPv6 will stop working"
        found.append(("icmp", LintWarning(location, message)))
    for rule in policy.allow:
        found.extend(_rule_warnings(rule))
    for later, earlier in sorted(find_overlaps(policy.allow).items()):
        message = _overlap_message(policy.allow[earlier], policy.allow[later])
        found.append(("overlap", LintWarning(policy.allow[later].location, message)))
    found.extend(deny_warnings(policy))
    found.sort(key=lambda item: (item[1].location.line, item[1].location.col))
    return found


def _rule_warnings(rule: AllowRule) -> Iterator[tuple[str, LintWarning]]:
    if _covers_every_port(rule.ports):
        yield "all-ports", LintWarning(rule.location, "this entry allows every port (1-65535)")
    else:
        trojans = [
            f"{port} ({name})" for port, name in TROJAN_PORTS if any(port in r for r in rule.ports)
        ]
        if trojans:
            message = f"allows well-known trojan port(s): {', '.join(trojans)}"
            yield "trojan", LintWarning(rule.location, message)
    if rule.sources is not None and not rule.sources:
        message = "'from' matches no address: allows nothing"
        yield "from-nothing", LintWarning(rule.location, message)
    for _, start, prefix in network_parts(in_family(rule.sources or (), 6)):
        if (
            prefix >= IPV4_MAPPED.prefixlen
            and start >> 32 == int(IPV4_MAPPED.network_address) >> 32
        ):
            network = IPv6Network((start, prefix))
            mapped = network.network_address.ipv4_mapped
            as_v4 = IPv4Network((mapped or 0, network.prefixlen - 96))
            written = f"::ffff:{as_v4.network_address}/{network.prefixlen}"
            message = (
                f"from {written} is IPv4-mapped IPv6: IPv4 clients arrive as IPv4 and never"
                f" match it; write {as_v4}"
            )
            yield "ipv4-mapped", LintWarning(rule.location, message)
    if rule.sources and not rule.comment:
        hosts = _public_hosts(rule)
        if len(hosts) == 1:
            message = f"from a single public host {hosts[0]} with no comment; say whose it is"
            yield "single-host", LintWarning(rule.location, message)
        elif hosts:
            named = ", ".join(hosts[:SINGLE_HOSTS_NAMED])
            more = " and more" if len(hosts) > SINGLE_HOSTS_NAMED else ""
            message = f"from single public hosts {named}{more} with no comment; say whose they are"
            yield "single-host", LintWarning(rule.location, message)


def _public_hosts(rule: AllowRule) -> list[str]:
    """Up to SINGLE_HOSTS_NAMED + 1 single public hosts among the rule's sources."""
    hosts: list[str] = []
    for version, start in host_routes(rule.sources or ()):
        address = IPv4Address(start) if version == 4 else IPv6Address(start)
        if address.is_global:
            hosts.append(str(address))
            if len(hosts) > SINGLE_HOSTS_NAMED:
                break
    return hosts


def _covers_every_port(ports: tuple[PortRange, ...]) -> bool:
    """Whether the ranges together cover 1-65535 (also when split, as 1-1000 and 1001-65535)."""
    next_port = ALL_PORTS.first
    for r in sorted(ports):
        if r.first > next_port:
            return False
        next_port = max(next_port, r.last + 1)
    return next_port > ALL_PORTS.last


def _overlap_message(first: AllowRule, second: AllowRule) -> str:
    """How `second` repeats or overlaps the earlier `first` (they do overlap)."""
    line = first.location.line
    shared = _first_shared(first.ports, second.ports)
    if first.interface != second.interface:
        return (
            f"overlaps the entry at line {line} (port {shared}; interface"
            f" {first.interface or 'any'} and {second.interface or 'any'} meet)"
        )
    if (first.ports, first.protos, first.sources) == (second.ports, second.protos, second.sources):
        return f"duplicates the entry at line {line}"
    return f"overlaps the entry at line {line} (port {shared})"


def _first_shared(first: tuple[PortRange, ...], second: tuple[PortRange, ...]) -> PortRange:
    """The smallest pairwise intersection of two sorted port-range lists (they intersect)."""
    best: PortRange | None = None
    i = j = 0
    while i < len(first) and j < len(second):
        a, b = first[i], second[j]
        if a.overlaps(b):
            shared = PortRange(max(a.first, b.first), min(a.last, b.last))
            best = shared if best is None else min(best, shared)
        if a.last < b.last:
            i += 1
        else:
            j += 1
    assert best is not None, "called only for entries that overlap"
    return best


# --- overlap detection -------------------------------------------------------------------------
#
# An entry is a set of rectangles: (port range) x (source CIDR); no `from` means 0.0.0.0/0 and
# ::/0. Two entries overlap when a rectangle of one meets a rectangle of the other. CIDRs are
# laminar (two are nested or disjoint), so the CIDRs meeting c are its ancestors (a chain of at
# most 129) and its descendants (a contiguous run in (version, start, prefix) order). A sweep
# over the ports keeps the active rectangles in a segment tree over that order; each insertion
# asks for the smallest entry index among the active rectangles meeting it (is there an earlier
# entry?) and takes every not-yet-flagged later entry among them (they overlap an earlier one).
# Each rectangle is inserted, removed and flagged at most once: O(R log R) for R rectangles.

_NONE = -1
_Cidr = tuple[int, int, int]  # (version, start, prefix)
_ANYWHERE: tuple[_Cidr, ...] = ((4, 0, 0), (6, 0, 0))
_BITS = {4: 32, 6: 128}


def interfaces_meet(first: str | None, second: str | None) -> bool:
    """Whether two `interface` values can match the same packet (None: any; "eth*": prefix)."""
    if first is None or second is None:
        return True
    if first.endswith("*") and second.endswith("*"):
        return first[:-1].startswith(second[:-1]) or second[:-1].startswith(first[:-1])
    if first.endswith("*"):
        return second.startswith(first[:-1])
    if second.endswith("*"):
        return first.startswith(second[:-1])
    return first == second


def find_overlaps(rules: tuple[AllowRule, ...]) -> dict[int, int]:
    """{index of an entry: index of an earlier entry it overlaps}, for each entry that does.

    Entries meet per protocol when their interfaces can match the same packet: the same
    interface, an entry for any interface and one for eth0, "eth*" and eth0 (or "e*"). One
    sweep per (protocol, interface), one between the any-interface entries and the others,
    and one per glob against the names it covers: an interface name has at most 15
    characters, so each entry is in at most 16 sweeps and the whole stays O(n log n).
    """
    by_proto: dict[Proto, list[int]] = {}
    for index, rule in enumerate(rules):
        if rule.sources == ():
            continue  # matches nothing, so overlaps nothing
        for proto in rule.protos:
            by_proto.setdefault(proto, []).append(index)
    sweeps: list[tuple[list[int], list[int] | None]] = []  # (members, other side or None)
    for members in by_proto.values():
        by_interface: dict[str | None, list[int]] = {}
        for index in members:
            by_interface.setdefault(rules[index].interface, []).append(index)
        sweeps.extend((group, None) for group in by_interface.values())
        named = [i for i in members if rules[i].interface is not None]
        if None in by_interface and named:
            sweeps.append((by_interface[None], named))
        for glob in (name for name in by_interface if name is not None and name.endswith("*")):
            covered = [
                i
                for name, group in by_interface.items()
                if name is not None and name != glob and name.startswith(glob[:-1])
                for i in group
            ]
            if covered:
                sweeps.append((by_interface[glob], covered))
    found: dict[int, int] = {}
    for members, others in sweeps:
        if others is None and len(members) < 2:
            continue
        for later, earlier in _Sweep(rules, members, others).run().items():
            if earlier < found.get(later, later):
                found[later] = earlier
    return found


def _cidrs(rule: AllowRule) -> tuple[_Cidr, ...]:
    if rule.sources is None:
        return _ANYWHERE
    return tuple(network_parts(rule.sources))


def _end(cidr: _Cidr) -> int:
    version, start, prefix = cidr
    return start + (1 << (_BITS[version] - prefix)) - 1


class _Sweep:
    """One overlap sweep; see the comment above.

    With `others`, the sweep is between two sides: an entry of `members` is flagged only
    against entries of `others` and the reverse (each side is its own segment tree).
    """

    def __init__(
        self, rules: tuple[AllowRule, ...], members: list[int], others: list[int] | None = None
    ) -> None:
        self.bipartite = others is not None
        side_of = {index: 0 for index in members} | {index: 1 for index in others or ()}
        members = list(side_of)
        # rectangles: (first port, last port, entry index, leaf)
        cidr_of = {index: _cidrs(rules[index]) for index in members}
        leaves = sorted({cidr for cidrs in cidr_of.values() for cidr in cidrs})
        self.leaf_of = {cidr: position for position, cidr in enumerate(leaves)}
        self.parent = _parents(leaves)
        self.last_descendant = [
            bisect_right(leaves, (cidr[0], _end(cidr), 1 << 8)) - 1 for cidr in leaves
        ]
        self.rects = [
            (ports.first, ports.last, index, self.leaf_of[cidr])
            for index in members
            for ports in rules[index].ports
            for cidr in cidr_of[index]
        ]
        self.side = [side_of[rect[2]] for rect in self.rects]
        size = 1
        while size < len(leaves):
            size *= 2
        self.size = size
        big = len(rules)
        self.big = big
        sides = 2 if self.bipartite else 1
        # per side: smallest active entry index below each node, largest active unflagged one
        self.low = [[big] * (2 * size) for _ in range(sides)]
        self.high = [[_NONE] * (2 * size) for _ in range(sides)]
        self.low_heaps: list[list[list[tuple[int, int]]]] = [
            [[] for _ in leaves] for _ in range(sides)
        ]
        self.high_heaps: list[list[list[tuple[int, int]]]] = [
            [[] for _ in leaves] for _ in range(sides)
        ]
        self.active = [False] * len(self.rects)
        self.flagged: dict[int, int] = {}

    def run(self) -> dict[int, int]:
        """Sweep the ports; return {later entry: earlier entry it overlaps}."""
        order = sorted(range(len(self.rects)), key=lambda r: (self.rects[r][0], self.rects[r][2]))
        ends = sorted(range(len(self.rects)), key=lambda r: self.rects[r][1])
        done = 0
        for rect in order:
            first, _, index, leaf = self.rects[rect]
            while done < len(ends) and self.rects[ends[done]][1] < first:
                if self.active[ends[done]]:
                    self.active[ends[done]] = False
                    self._refresh(self.rects[ends[done]][3], self.side[ends[done]])
                done += 1
            mine = self.side[rect]
            self._query(index, leaf, 1 - mine if self.bipartite else mine)
            self.active[rect] = True
            heapq.heappush(self.low_heaps[mine][leaf], (index, rect))
            if index not in self.flagged:
                heapq.heappush(self.high_heaps[mine][leaf], (-index, rect))
            self._refresh(leaf, mine)
        return self.flagged

    def _query(self, index: int, leaf: int, side: int) -> None:
        """Flag `index` if an earlier entry of `side` meets `leaf`; flag later ones meeting it."""
        ancestors = []
        node = self.parent[leaf]
        while node != _NONE:
            ancestors.append(node)
            node = self.parent[node]
        low = min([self.low[side][self.size + a] for a in ancestors], default=self.big)
        low = min(low, self._range_low(leaf, self.last_descendant[leaf], side))
        if low < index:
            self._flag(index, low)
        for node in self._range_nodes(leaf, self.last_descendant[leaf]):
            self._take_later(node, index, side)
        for ancestor in ancestors:
            self._take_later(self.size + ancestor, index, side)

    def _flag(self, later: int, earlier: int) -> None:
        if earlier < self.flagged.get(later, later):
            self.flagged[later] = earlier

    def _take_later(self, node: int, index: int, side: int) -> None:
        """Flag every unflagged active entry of `side` above `index` in `node`'s subtree."""
        if self.high[side][node] <= index:
            return
        if node >= self.size:
            leaf = node - self.size
            heap = self.high_heaps[side][leaf]
            while heap and -heap[0][0] > index:
                later, rect = -heap[0][0], heap[0][1]
                heapq.heappop(heap)
                if self.active[rect] and later not in self.flagged:
                    self.flagged[later] = index
            self._refresh(leaf, side)
            return
        self._take_later(2 * node, index, side)
        self._take_later(2 * node + 1, index, side)

    def _refresh(self, leaf: int, side: int) -> None:
        """Recompute a leaf's values after a change and carry them up to the root."""
        lows, highs = self.low_heaps[side][leaf], self.high_heaps[side][leaf]
        while lows and not self.active[lows[0][1]]:
            heapq.heappop(lows)
        while highs and (not self.active[highs[0][1]] or -highs[0][0] in self.flagged):
            heapq.heappop(highs)
        low, high = self.low[side], self.high[side]
        node = self.size + leaf
        low[node] = lows[0][0] if lows else self.big
        high[node] = -highs[0][0] if highs else _NONE
        node //= 2
        while node:
            low[node] = min(low[2 * node], low[2 * node + 1])
            high[node] = max(high[2 * node], high[2 * node + 1])
            node //= 2

    def _range_nodes(self, first: int, last: int) -> list[int]:
        """The canonical segment-tree nodes covering leaves first..last."""
        nodes = []
        lo, hi = first + self.size, last + self.size + 1
        while lo < hi:
            if lo & 1:
                nodes.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                nodes.append(hi)
            lo //= 2
            hi //= 2
        return nodes

    def _range_low(self, first: int, last: int, side: int) -> int:
        nodes = self._range_nodes(first, last)
        return min((self.low[side][n] for n in nodes), default=self.big)


def _parents(leaves: list[_Cidr]) -> list[int]:
    """For each CIDR (sorted), the position of the smallest CIDR containing it, or _NONE."""
    parents: list[int] = []
    stack: list[int] = []
    for position, cidr in enumerate(leaves):
        while stack and not (
            leaves[stack[-1]][0] == cidr[0] and cidr[1] <= _end(leaves[stack[-1]])
        ):
            stack.pop()
        parents.append(stack[-1] if stack else _NONE)
        stack.append(position)
    return parents
