"""Target-neutral layout of a policy: merged port sets and disjoint (source, port) elements.

Every renderer starts here, so that the collapsing of overlapping entries is done once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from portguard.model import AllowRule, Network, Policy, PortRange, Proto
from portguard.policy.networks import in_family, union

__all__ = [
    "PolicyLayout",
    "SourcePorts",
    "complement",
    "layout_policy",
    "merge_ranges",
]


@dataclass(frozen=True)
class SourcePorts:
    """A port range open to a collapsed list of source networks of one IP family."""

    ports: PortRange
    sources: Sequence[Network]  # a NetworkSet from the layout


@dataclass(frozen=True)
class PolicyLayout:
    """Plain entries (no from/interface/limit) merged per protocol; the rest kept per entry."""

    open_ports: tuple[tuple[Proto, tuple[PortRange, ...]], ...]  # open to any source
    sourced: tuple[tuple[Proto, int, tuple[SourcePorts, ...]], ...]  # (proto, family, elements)
    special: tuple[tuple[int, AllowRule], ...]  # (1-based entry number, rule): iface/limit/log

    def open_for(self, proto: Proto) -> tuple[PortRange, ...]:
        """The ports open to anyone for `proto`."""
        return dict(self.open_ports).get(proto, ())

    def sourced_for(self, proto: Proto, family: int) -> tuple[SourcePorts, ...]:
        """The (sources, ports) elements for `proto` and IP `family` (4 or 6)."""
        for p, f, elements in self.sourced:
            if p is proto and f == family:
                return elements
        return ()


def merge_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, non-overlapping, non-adjacent ranges covering the same ports."""
    merged: list[PortRange] = []
    for r in sorted(ranges):
        if merged and r.first <= merged[-1].last + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.first, max(last.last, r.last))
        else:
            merged.append(r)
    return tuple(merged)


def complement(
    ranges: Sequence[PortRange], low: int = 1, high: int = 65535
) -> tuple[PortRange, ...]:
    """The ports in low..high that `ranges` do not cover, as merged ranges."""
    gaps: list[PortRange] = []
    cursor = low
    for r in merge_ranges(ranges):
        if r.first > cursor:
            gaps.append(PortRange(cursor, min(r.first - 1, high)))
        cursor = max(cursor, r.last + 1)
    if cursor <= high:
        gaps.append(PortRange(cursor, high))
    return tuple(g for g in gaps if g.first <= g.last)


def layout_policy(policy: Policy) -> PolicyLayout:
    """Split and merge the allow entries into the shapes every renderer needs."""
    plain: dict[Proto, list[PortRange]] = {p: [] for p in Proto}
    with_sources: dict[tuple[Proto, int], list[tuple[PortRange, Sequence[Network]]]] = {}
    special: list[tuple[int, AllowRule]] = []
    for number, rule in enumerate(policy.allow, start=1):
        if rule.interface is not None or rule.limit is not None or rule.log:
            special.append((number, rule))
            continue
        for proto in rule.protos:
            if rule.sources is None:
                plain[proto].extend(rule.ports)
                continue
            for family in (4, 6):
                networks = in_family(rule.sources, family)
                if networks:
                    bucket = with_sources.setdefault((proto, family), [])
                    bucket.extend((ports, networks) for ports in rule.ports)
    open_ports = tuple((p, merge_ranges(plain[p])) for p in Proto if plain[p])
    sourced = tuple(
        (proto, family, _disjoint(with_sources[(proto, family)]))
        for proto in Proto
        for family in (4, 6)
        if (proto, family) in with_sources
    )
    return PolicyLayout(open_ports=open_ports, sourced=sourced, special=tuple(special))


def _disjoint(pairs: list[tuple[PortRange, Sequence[Network]]]) -> tuple[SourcePorts, ...]:
    """Cut the port axis at every range edge so that no two (ports, sources) elements overlap.

    Interval sets in the kernel refuse overlapping elements; this also merges neighbours
    with identical sources, so the element count stays close to the input's. The lists
    are grouped by port range first, so each piece looks at the few distinct ranges, not at
    every network; a piece covered by one NetworkSet (the loader's) keeps it as it is, else
    its networks are collapsed once, by integers.
    """
    by_range: dict[PortRange, list[Sequence[Network]]] = {}
    for ports, networks in pairs:
        by_range.setdefault(ports, []).append(networks)
    edges = sorted({r.first for r in by_range} | {r.last + 1 for r in by_range})
    pieces: list[SourcePorts] = []
    for start, stop in pairwise(edges):
        lists = [
            nets
            for r, group in by_range.items()
            if r.first <= start and stop - 1 <= r.last
            for nets in group
        ]
        if not lists:
            continue
        sources = union(lists)  # a single NetworkSet (the loader's) is kept as it is
        if pieces and pieces[-1].sources == sources and pieces[-1].ports.last == start - 1:
            pieces[-1] = SourcePorts(PortRange(pieces[-1].ports.first, stop - 1), sources)
        else:
            pieces.append(SourcePorts(PortRange(start, stop - 1), sources))
    return tuple(pieces)
