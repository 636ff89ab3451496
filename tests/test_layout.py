"""render/layout.py against verdict.py: an independent evaluator of the layout must agree."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.model import (
    MAX_PORT,
    AllowRule,
    DefaultVerdict,
    IcmpMode,
    Network,
    Policy,
    PortRange,
    Proto,
)
from portguard.render.layout import PolicyLayout, complement, layout_policy, merge_ranges
from portguard.verdict import ConnState, Packet, PacketProto, rule_matches
from tests.test_verdict import packets_for, policies, port_ranges, rules

EXAMPLES = settings(max_examples=80, deadline=None)
Address = IPv4Address | IPv6Address


def _critical_ports(ranges: list[PortRange]) -> set[int]:
    """The ports where membership in a union of ranges can change, and their neighbours."""
    ports = {1, MAX_PORT}
    for r in ranges:
        ports |= {r.first - 1, r.first, r.last, r.last + 1}
    return {p for p in ports if 1 <= p <= MAX_PORT}


def _in_any(port: int, ranges: list[PortRange] | tuple[PortRange, ...]) -> bool:
    return any(r.first <= port <= r.last for r in ranges)


def _source_in(address: Address, networks: Sequence[Network]) -> bool:
    """Membership by integer bounds, not by `in`, to stay independent of verdict.py."""
    return any(
        n.version == address.version
        and int(n.network_address) <= int(address) <= int(n.broadcast_address)
        for n in networks
    )


def _special_accepts(rule: AllowRule, packet: Packet) -> bool:
    """An entry with an interface and/or limit, evaluated from its fields."""
    if packet.dport is None or packet.proto.value not in [p.value for p in rule.protos]:
        return False
    if not _in_any(packet.dport, rule.ports):
        return False
    if rule.sources is not None and not _source_in(packet.source, rule.sources):
        return False
    if rule.interface is not None:
        pattern = rule.interface
        wildcard = pattern.endswith("*")
        name_ok = (
            packet.interface[: len(pattern) - 1] == pattern[:-1]
            if wildcard
            else packet.interface == pattern
        )
        if not name_ok:
            return False
    return rule.limit is None or not packet.over_limit


def layout_accepts(layout: PolicyLayout, packet: Packet) -> bool:
    """Whether the layout lets a new TCP/UDP packet in: open set, sourced element or special."""
    if packet.proto not in (PacketProto.TCP, PacketProto.UDP) or packet.dport is None:
        return False
    proto = Proto(packet.proto.value)
    if _in_any(packet.dport, layout.open_for(proto)):
        return True
    for element in layout.sourced_for(proto, packet.source.version):
        if _in_any(packet.dport, [element.ports]) and _source_in(packet.source, element.sources):
            return True
    return any(_special_accepts(rule, packet) for _, rule in layout.special)


@EXAMPLES
@given(st.data())
def test_layout_agrees_with_verdict(data: st.DataObject) -> None:
    """For random policies and packets, the layout accepts exactly what the entries match."""
    policy = data.draw(policies(max_rules=6))
    layout = layout_policy(policy)
    for _ in range(8):
        packet = data.draw(packets_for(policy))
        l4 = data.draw(st.sampled_from([packet.proto, PacketProto.TCP, PacketProto.UDP]))
        packet = Packet(
            l4,
            packet.source,
            packet.interface,
            packet.dport or 22,
            ConnState.NEW,
            packet.icmp_type,
            packet.hop_limit,
            packet.over_limit,
        )
        expected = any(rule_matches(rule, packet) for rule in policy.allow)
        assert layout_accepts(layout, packet) == expected, packet


@EXAMPLES
@given(st.lists(port_ranges(), max_size=8))
def test_merge_ranges_sorted_disjoint_same_ports(ranges: list[PortRange]) -> None:
    """merge_ranges is sorted, neither overlapping nor adjacent, and covers the same ports."""
    merged = merge_ranges(ranges)
    for left, right in pairwise(merged):
        assert left.last + 1 < right.first
    for port in _critical_ports(ranges + list(merged)):
        assert _in_any(port, merged) == _in_any(port, ranges)


@EXAMPLES
@given(st.lists(port_ranges(), max_size=8))
def test_complement_partitions_all_ports(ranges: list[PortRange]) -> None:
    """complement(x) and x never share a port and together are exactly 1-65535."""
    gaps = complement(ranges)
    assert merge_ranges([*ranges, *gaps]) == ((PortRange(1, MAX_PORT),))
    for port in _critical_ports(ranges + list(gaps)):
        assert not (_in_any(port, gaps) and _in_any(port, ranges))
    assert complement(gaps) == merge_ranges(ranges)


@EXAMPLES
@given(st.lists(rules(special=False), min_size=1, max_size=6))
def test_sourced_elements_disjoint_and_exact(entries: list[AllowRule]) -> None:
    """The (port, source) elements never overlap and cover exactly the input pairs."""
    policy = layout_policy_from(entries)
    layout = layout_policy(policy)
    for proto, family, elements in layout.sourced:
        for i, first in enumerate(elements):
            for second in elements[i + 1 :]:
                assert not first.ports.overlaps(second.ports)
            for a in first.sources:
                for b in first.sources:
                    assert a == b or not a.overlaps(b)
        pairs = [
            (r, n)
            for rule in entries
            if proto in rule.protos and rule.sources is not None
            for r in rule.ports
            for n in rule.sources
            if n.version == family
        ]
        probes: set[Address] = set()
        for _, network in pairs:
            for number in (int(network.network_address), int(network.broadcast_address)):
                for near in (number - 1, number, number + 1):
                    if 0 <= near < 2 ** (32 if family == 4 else 128):
                        probes.add(IPv4Address(near) if family == 4 else IPv6Address(near))
        for port in _critical_ports([r for r, _ in pairs]):
            for address in probes:
                wanted = any(_in_any(port, [r]) and _source_in(address, (n,)) for r, n in pairs)
                got = any(
                    _in_any(port, [e.ports]) and _source_in(address, e.sources) for e in elements
                )
                assert got == wanted, (port, address)


def layout_policy_from(entries: list[AllowRule]) -> Policy:
    """A default policy holding `entries`."""
    return Policy(
        "random.yaml", 1, None, DefaultVerdict.DROP, IcmpMode.ESSENTIAL, False, (), tuple(entries)
    )
