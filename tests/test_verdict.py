"""Properties of verdict.py, the one meaning of a policy (DESIGN §3), on random policies."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.errors import Location
from portguard.model import (
    AllowRule,
    DefaultVerdict,
    ForwardedMode,
    IcmpMode,
    Limit,
    Network,
    Policy,
    PortRange,
    Proto,
    RateUnit,
)
from portguard.verdict import (
    ESSENTIAL_ICMPV4,
    ESSENTIAL_ICMPV6,
    ESSENTIAL_ICMPV6_LINK_LOCAL,
    ConnState,
    Packet,
    PacketProto,
    Verdict,
    interface_matches,
    rule_matches,
    verdict,
)

__all__ = ["packets_for", "policies", "port_ranges", "rules"]

INTERFACES = ("eth0", "eth1", "eth10", "wg0", "lo")
INTERFACE_PATTERNS = ("eth0", "eth1", "eth*", "wg*", "eth1*")
ICMP_TYPES = sorted(
    ESSENTIAL_ICMPV4
    | ESSENTIAL_ICMPV6
    | ESSENTIAL_ICMPV6_LINK_LOCAL
    | {"router-solicit", "redirect", "timestamp-request", "echo-reply"}
)
EXAMPLES = settings(max_examples=80, deadline=None)


@st.composite
def port_ranges(draw: st.DrawFn) -> PortRange:
    """A port range, often in a small window so that entries overlap."""
    low, high = draw(st.sampled_from([(1, 40), (1, 65535), (65500, 65535)]))
    first = draw(st.integers(low, high))
    last = draw(st.integers(first, min(high, first + draw(st.sampled_from([0, 5, 30, 70000])))))
    return PortRange(first, last)


@st.composite
def networks(draw: st.DrawFn) -> Network:
    """An IPv4 or IPv6 network near 10.0.0.0/8 or 2001:db8::/32, so that sources collide."""
    if draw(st.booleans()):
        address = (10 << 24) | draw(st.integers(0, 2**24 - 1))
        return IPv4Network((address, draw(st.sampled_from([0, 8, 16, 24, 30, 32]))), strict=False)
    address = (0x20010DB8 << 96) | draw(st.integers(0, 2**96 - 1))
    return IPv6Network((address, draw(st.sampled_from([0, 32, 48, 64, 120, 128]))), strict=False)


@st.composite
def rules(draw: st.DrawFn, line: int = 1, special: bool = True) -> AllowRule:
    """An AllowRule built directly (no YAML), with a location."""
    sources = draw(st.none() | st.lists(networks(), max_size=3).map(tuple))
    return AllowRule(
        ports=tuple(sorted(set(draw(st.lists(port_ranges(), min_size=1, max_size=3))))),
        protos=draw(st.sampled_from([(Proto.TCP,), (Proto.UDP,), (Proto.TCP, Proto.UDP)])),
        sources=sources,
        source_names=tuple(str(n) for n in sources) if sources is not None else (),
        interface=draw(st.none() | st.sampled_from(INTERFACE_PATTERNS)) if special else None,
        limit=draw(st.none() | st.just(Limit(6, RateUnit.MINUTE))) if special else None,
        comment=None,
        service=None,
        location=Location("random.yaml", line, 5),
    )


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 5) -> Policy:
    """A Policy with up to `max_rules` random entries."""
    count = draw(st.integers(0, max_rules))
    return Policy(
        path="random.yaml",
        version=1,
        description=None,
        default=draw(st.sampled_from(DefaultVerdict)),
        icmp=draw(st.sampled_from(IcmpMode)),
        log=draw(st.booleans()),
        sets=(),
        allow=tuple(draw(rules(line=4 + 2 * i)) for i in range(count)),
        forwarded=draw(st.sampled_from(ForwardedMode)),
    )


def _near(network: Network) -> list[IPv4Address | IPv6Address]:
    """Addresses on both sides of a network's edges."""
    first, last = int(network.network_address), int(network.broadcast_address)
    top = 2**32 - 1 if network.version == 4 else 2**128 - 1
    numbers = {max(first - 1, 0), first, last, min(last + 1, top)}
    return [IPv4Address(n) if network.version == 4 else IPv6Address(n) for n in numbers]


@st.composite
def packets_for(draw: st.DrawFn, policy: Policy) -> Packet:
    """A packet aimed near the policy's ports and sources, so matches and misses are both common."""
    port_choices = [1, 22, 65535]
    address_choices: list[IPv4Address | IPv6Address] = [
        IPv4Address("10.0.0.1"),
        IPv6Address("2001:db8::1"),
        IPv4Address("192.0.2.9"),
    ]
    for rule in policy.allow:
        for r in rule.ports:
            port_choices += [max(r.first - 1, 1), r.first, r.last, min(r.last + 1, 65535)]
        for network in rule.sources or ():
            address_choices += _near(network)
    proto = draw(st.sampled_from(PacketProto))
    is_l4 = proto in (PacketProto.TCP, PacketProto.UDP)
    return Packet(
        proto=proto,
        source=draw(st.sampled_from(address_choices)),
        interface=draw(st.sampled_from(INTERFACES)),
        dport=draw(st.sampled_from(port_choices)) if is_l4 else None,
        state=draw(st.sampled_from(ConnState)),
        icmp_type=None if is_l4 else draw(st.sampled_from(ICMP_TYPES)),
        hop_limit=draw(st.sampled_from([64, 255])),
        over_limit=draw(st.booleans()),
    )


def _default(policy: Policy) -> Verdict:
    return Verdict.REJECT if policy.default is DefaultVerdict.REJECT else Verdict.DROP


@EXAMPLES
@given(st.data())
def test_loopback_is_always_accepted(data: st.DataObject) -> None:
    """Whatever the policy and packet, arriving on lo means accept."""
    policy = data.draw(policies())
    packet = replace(data.draw(packets_for(policy)), interface="lo")
    assert verdict(policy, packet) is Verdict.ACCEPT


@EXAMPLES
@given(st.data())
def test_invalid_state_is_always_dropped(data: st.DataObject) -> None:
    """Off loopback, conntrack state invalid is dropped, even with default: reject."""
    policy = data.draw(policies())
    packet = replace(data.draw(packets_for(policy)), state=ConnState.INVALID)
    if packet.interface != "lo":
        assert verdict(policy, packet) is Verdict.DROP


@EXAMPLES
@given(st.data(), st.sampled_from([ConnState.ESTABLISHED, ConnState.RELATED]))
def test_established_and_related_are_accepted(data: st.DataObject, state: ConnState) -> None:
    """Replies and related traffic are accepted under every policy, even allow: []."""
    policy = data.draw(policies())
    packet = replace(data.draw(packets_for(policy)), state=state)
    assert verdict(policy, packet) is Verdict.ACCEPT


@EXAMPLES
@given(st.data())
def test_empty_allow_list_blocks_every_new_tcp_udp_packet(data: st.DataObject) -> None:
    """With allow: [], every new TCP/UDP packet off loopback gets the default verdict."""
    policy = replace(data.draw(policies()), allow=())
    packet = data.draw(packets_for(policy))
    packet = replace(packet, state=ConnState.NEW, proto=PacketProto.TCP, dport=packet.dport or 80)
    if packet.interface != "lo":
        assert verdict(policy, packet) is _default(policy)
        assert verdict(policy, replace(packet, proto=PacketProto.UDP)) is _default(policy)


@EXAMPLES
@given(st.data())
def test_adding_an_entry_never_blocks_what_was_accepted(data: st.DataObject) -> None:
    """Monotonic: policy + one more entry accepts a superset of what the policy accepted."""
    policy = data.draw(policies())
    extra = data.draw(rules(line=99))
    bigger = replace(policy, allow=(*policy.allow, extra))
    packet = data.draw(packets_for(bigger))
    if verdict(policy, packet) is Verdict.ACCEPT:
        assert verdict(bigger, packet) is Verdict.ACCEPT


@st.composite
def rule_and_matching_packet(draw: st.DrawFn) -> tuple[AllowRule, Packet]:
    """An entry and a new packet built to satisfy it: proto, port, source, interface, limit."""
    rule = draw(rules())
    if rule.sources == ():
        rule = replace(rule, sources=None, source_names=())
    port_range = draw(st.sampled_from(rule.ports))
    if rule.sources is None:
        anywhere: list[IPv4Address | IPv6Address] = [
            IPv4Address("203.0.113.7"),
            IPv6Address("2001:db8:ffff::9"),
        ]
        source = draw(st.sampled_from(anywhere))
    else:
        network = draw(st.sampled_from(rule.sources))
        offset = draw(st.integers(0, network.num_addresses - 1))
        number = int(network.network_address) + offset
        source = IPv4Address(number) if network.version == 4 else IPv6Address(number)
    interface = "eth0"
    if rule.interface is not None:
        suffix = draw(st.sampled_from(["", "7", "x"])) if rule.interface.endswith("*") else ""
        interface = rule.interface.removesuffix("*") + suffix
    packet = Packet(
        proto=PacketProto(draw(st.sampled_from(rule.protos)).value),
        source=source,
        interface=interface,
        dport=draw(st.integers(port_range.first, port_range.last)),
        over_limit=draw(st.booleans()) if rule.limit is None else False,
    )
    return rule, packet


@EXAMPLES
@given(rule_and_matching_packet(), policies())
def test_a_matching_packet_is_accepted(pair: tuple[AllowRule, Packet], policy: Policy) -> None:
    """A packet that fits an entry's proto, port, source, interface and limit is accepted."""
    rule, packet = pair
    assert rule_matches(rule, packet)
    assert verdict(replace(policy, allow=(*policy.allow, rule)), packet) is Verdict.ACCEPT


@EXAMPLES
@given(rule_and_matching_packet())
def test_over_the_limit_falls_to_the_default(pair: tuple[AllowRule, Packet]) -> None:
    """A source over a limited entry's rate is not accepted by that entry."""
    rule, packet = pair
    limited = replace(rule, limit=Limit(1, RateUnit.SECOND))
    assert not rule_matches(limited, replace(packet, over_limit=True))
    assert rule_matches(limited, replace(packet, over_limit=False))


def test_wrong_port_source_or_interface_does_not_match() -> None:
    """Each condition of an entry is required on its own."""
    rule = AllowRule(
        ports=(PortRange(22, 22),),
        protos=(Proto.TCP,),
        sources=(IPv4Network("192.0.2.0/24"),),
        source_names=("192.0.2.0/24",),
        interface="eth*",
        limit=None,
        comment=None,
        service=None,
        location=Location("x.yaml", 3, 5),
    )
    good = Packet(PacketProto.TCP, IPv4Address("192.0.2.5"), "eth3", dport=22)
    assert rule_matches(rule, good)
    assert not rule_matches(rule, replace(good, dport=23))
    assert not rule_matches(rule, replace(good, proto=PacketProto.UDP))
    assert not rule_matches(rule, replace(good, source=IPv4Address("192.0.3.5")))
    assert not rule_matches(rule, replace(good, source=IPv6Address("::ffff:192.0.2.5")))
    assert not rule_matches(rule, replace(good, interface="wg0"))


def test_interface_patterns() -> None:
    """Exact names match exactly; a trailing * matches by prefix, like nftables' iifname."""
    assert interface_matches("eth0", "eth0")
    assert not interface_matches("eth0", "eth01")
    assert interface_matches("eth*", "eth")
    assert interface_matches("eth*", "eth12")
    assert not interface_matches("eth*", "veth0")


def test_icmp_modes() -> None:
    """essential: echo-request and hop-limit-255 ND only; all: any; none: nothing."""
    base = Policy("p.yaml", 1, None, DefaultVerdict.DROP, IcmpMode.ESSENTIAL, False, (), ())
    ping = Packet(PacketProto.ICMP, IPv4Address("192.0.2.2"), "eth0", icmp_type="echo-request")
    ns = Packet(PacketProto.ICMPV6, IPv6Address("fe80::2"), "eth0", icmp_type="nd-neighbor-solicit")
    assert verdict(base, ping) is Verdict.ACCEPT
    assert verdict(base, replace(ping, icmp_type="timestamp-request")) is Verdict.DROP
    assert verdict(base, replace(ns, hop_limit=255)) is Verdict.ACCEPT
    assert verdict(base, replace(ns, hop_limit=64)) is Verdict.DROP
    assert verdict(replace(base, icmp=IcmpMode.ALL), replace(ns, hop_limit=3)) is Verdict.ACCEPT
    assert verdict(replace(base, icmp=IcmpMode.NONE), ping) is Verdict.DROP
    rejecting = replace(base, icmp=IcmpMode.NONE, default=DefaultVerdict.REJECT)
    assert verdict(rejecting, ping) is Verdict.REJECT


def _dnat(packet: Packet) -> Packet:
    """The same packet, as a connection this host DNATs elsewhere (dport: the original port)."""
    return replace(packet, dnat=True)


@EXAMPLES
@given(st.data(), st.sampled_from([PacketProto.TCP, PacketProto.UDP]))
def test_filtered_dnat_is_judged_like_input_off_loopback(
    data: st.DataObject, proto: PacketProto
) -> None:
    """forwarded: filter: a TCP/UDP DNAT packet gets the input verdict of the same packet off lo."""
    policy = replace(data.draw(policies()), forwarded=ForwardedMode.FILTER)
    packet = data.draw(packets_for(policy))
    interface = packet.interface if packet.interface != "lo" else "eth0"
    packet = replace(packet, proto=proto, dport=packet.dport or 80, icmp_type=None)
    packet = replace(packet, interface=interface)
    assert verdict(policy, _dnat(packet)) is verdict(policy, packet)


@EXAMPLES
@given(st.data())
def test_dnat_on_loopback_is_not_waved_through(data: st.DataObject) -> None:
    """Rule 1 does not apply to DNAT: arriving on lo is judged like any interface."""
    policy = replace(data.draw(policies()), forwarded=ForwardedMode.FILTER, allow=())
    packet = replace(
        data.draw(packets_for(policy)),
        proto=PacketProto.TCP,
        dport=8080,
        interface="lo",
        state=ConnState.NEW,
        icmp_type=None,
    )
    assert verdict(policy, _dnat(packet)) is _default(policy)


@EXAMPLES
@given(st.data())
def test_ignored_dnat_is_always_accepted(data: st.DataObject) -> None:
    """forwarded: ignore: portguard accepts every DNAT packet conntrack tracks (not invalid)."""
    policy = replace(data.draw(policies()), forwarded=ForwardedMode.IGNORE)
    packet = _dnat(data.draw(packets_for(policy)))
    expected = Verdict.DROP if packet.state is ConnState.INVALID else Verdict.ACCEPT
    assert verdict(policy, packet) is expected


@EXAMPLES
@given(st.data(), st.sampled_from([ConnState.ESTABLISHED, ConnState.RELATED]))
def test_established_dnat_is_accepted(data: st.DataObject, state: ConnState) -> None:
    """Replies and related traffic of a published port pass under every policy."""
    policy = data.draw(policies())
    packet = replace(_dnat(data.draw(packets_for(policy))), state=state)
    assert verdict(policy, packet) is Verdict.ACCEPT


@EXAMPLES
@given(st.data(), st.sampled_from([PacketProto.ICMP, PacketProto.ICMPV6, PacketProto.OTHER]))
def test_dnat_of_other_protocols_is_accepted(data: st.DataObject, proto: PacketProto) -> None:
    """Only TCP and UDP DNAT is filtered: ICMP and other protocols pass, even with icmp: none."""
    policy = replace(data.draw(policies()), icmp=IcmpMode.NONE, allow=())
    packet = replace(
        _dnat(data.draw(packets_for(policy))), proto=proto, dport=None, state=ConnState.NEW
    )
    assert verdict(policy, packet) is Verdict.ACCEPT


@EXAMPLES
@given(st.data())
def test_invalid_dnat_is_dropped(data: st.DataObject) -> None:
    """An invalid packet is never translated, so it meets input's rule 2: dropped."""
    policy = data.draw(policies())
    packet = replace(_dnat(data.draw(packets_for(policy))), state=ConnState.INVALID)
    assert verdict(policy, packet) is Verdict.DROP


def test_dnat_matches_the_original_port_source_and_limit() -> None:
    """A published port is allowed by its original port and `from`; the limit still counts."""
    rule = AllowRule(
        ports=(PortRange(8080, 8080),),
        protos=(Proto.TCP,),
        sources=(IPv4Network("192.0.2.0/24"),),
        source_names=("192.0.2.0/24",),
        interface="eth0",
        limit=Limit(6, RateUnit.MINUTE),
        comment=None,
        service=None,
        location=Location("x.yaml", 3, 5),
    )
    policy = Policy("p.yaml", 1, None, DefaultVerdict.REJECT, IcmpMode.ALL, False, (), (rule,))
    good = Packet(PacketProto.TCP, IPv4Address("192.0.2.5"), "eth0", dport=8080, dnat=True)
    assert verdict(policy, good) is Verdict.ACCEPT
    assert verdict(policy, replace(good, dport=80)) is Verdict.REJECT
    assert verdict(policy, replace(good, source=IPv4Address("198.51.100.1"))) is Verdict.REJECT
    assert verdict(policy, replace(good, interface="eth1")) is Verdict.REJECT
    assert verdict(policy, replace(good, over_limit=True)) is Verdict.REJECT
    ignoring = replace(policy, forwarded=ForwardedMode.IGNORE)
    assert verdict(ignoring, replace(good, dport=80)) is Verdict.ACCEPT
