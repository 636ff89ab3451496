"""plan's socket judging by interval arithmetic gives the answers of the old verdict.py walk."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    ip_address,
)

from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.errors import Location
from portguard.facts.published import PublishedPort
from portguard.model import (
    AllowRule,
    DefaultVerdict,
    DenySource,
    IcmpMode,
    ListeningSocket,
    Network,
    Policy,
    PortRange,
    Proto,
)
from portguard.plan import (
    GENERIC_INTERFACE,
    OUTSIDER_START,
    ReachIndex,
    SocketPlan,
    judge_published,
    judge_socket,
    reach_index,
    rule_reach_text,
)
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, rule_matches, verdict
from tests.test_verdict import policies, rules

EXAMPLES = settings(max_examples=300, deadline=None)
Address = IPv4Address | IPv6Address
# Patterns that do and do not admit GENERIC_INTERFACE ("pg-probe0"), and loopback.
PATTERNS = ("eth0", "eth*", "pg*", "*", "lo", "pg-probe0")


# --- the reference: portguard 0.x's _reach, which walks every source through verdict() ---


def _old_outsider(policy: Policy, family: int) -> Address | None:
    named: list[Network] = [
        net for rule in policy.allow for net in (rule.sources or ()) if net.version == family
    ]
    named += [net for net in policy.denied() if net.version == family]
    candidate = OUTSIDER_START[family]
    for net in collapse_addresses(named):  # type: ignore[type-var]  # one family only
        if candidate in net:
            try:
                candidate = net.broadcast_address + 1
            except AddressValueError:
                return None
    return candidate


def _old_reach(
    policy: Policy, proto: PacketProto, port: int, families: tuple[int, ...], dnat: bool
) -> tuple[bool, tuple[str, ...]]:
    def accepted(source: Address, interface: str) -> bool:
        packet = Packet(proto, source, interface, dport=port, state=ConnState.NEW, dnat=dnat)
        return verdict(policy, packet) is Verdict.ACCEPT

    outsiders = [o for o in (_old_outsider(policy, f) for f in families) if o is not None]
    from_anywhere = any(accepted(o, GENERIC_INTERFACE) for o in outsiders)
    allowed_by: list[str] = []
    for rule in policy.allow:
        if rule.sources is None:
            sources = list(outsiders)
        else:
            sources = [
                n.network_address
                for n in rule.sources
                if n.version in families and not n.network_address.is_loopback
            ]
        pattern = rule.interface
        interface = (
            GENERIC_INTERFACE
            if pattern is None
            else (pattern[:-1] + "0" if pattern.endswith("*") else pattern)
        )
        if any(
            accepted(s, interface) and rule_matches(rule, Packet(proto, s, interface, dport=port))
            for s in sources
        ):
            allowed_by.append(rule_reach_text(rule))
    return from_anywhere, tuple(dict.fromkeys(allowed_by))


# --- strategies: sources that cover the outsider's start, loopback, the whole space ---


@st.composite
def tricky_networks(draw: st.DrawFn) -> Network:
    """Networks around OUTSIDER_START, loopback, and everything, besides the usual ones."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        start = int(OUTSIDER_START[4]) + draw(st.integers(-300, 300))
        return IPv4Network((start, draw(st.sampled_from([22, 24, 30, 31, 32]))), strict=False)
    if choice == 1:
        start = int(OUTSIDER_START[6]) + draw(st.integers(-300, 300))
        return IPv6Network((start, draw(st.sampled_from([118, 120, 127, 128]))), strict=False)
    if choice == 2:
        text = draw(st.sampled_from(["127.0.0.0/8", "127.0.0.1/32", "::1/128", "::/127"]))
        return IPv4Network(text) if "." in text else IPv6Network(text)
    if choice == 3:
        text = draw(st.sampled_from(["0.0.0.0/0", "::/0", "1.0.0.0/8", "2000::/3", "128.0.0.0/1"]))
        return IPv4Network(text) if "." in text else IPv6Network(text)
    if draw(st.booleans()):
        return IPv4Network(((10 << 24) | draw(st.integers(0, 2**24 - 1)), 24), strict=False)
    return IPv6Network(((0x20010DB8 << 96) | draw(st.integers(0, 2**96 - 1)), 64), strict=False)


@st.composite
def reach_policies(draw: st.DrawFn) -> Policy:
    """A random policy whose entries name tricky sources and interfaces."""
    policy = draw(policies(max_rules=6))
    allow: list[AllowRule] = []
    for drawn in policy.allow:
        rule = drawn
        if draw(st.booleans()):
            sources = tuple(draw(st.lists(tricky_networks(), max_size=4)))
            rule = replace(rule, sources=sources, source_names=tuple(map(str, sources)))
        if draw(st.booleans()):
            rule = replace(rule, interface=draw(st.none() | st.sampled_from(PATTERNS)))
        allow.append(rule)
    allow += draw(st.lists(rules(line=99), max_size=2))
    deny = tuple(
        DenySource(str(net), (net,), Location("random.yaml", 90 + n, 5))
        for n, net in enumerate(draw(st.lists(tricky_networks(), max_size=3)))
    )
    return replace(policy, allow=tuple(allow), deny=deny)


@st.composite
def sockets_for(draw: st.DrawFn, policy: Policy) -> ListeningSocket:
    """A listening socket on a port the policy names (or not), on a random bound address."""
    ports = [1, 22, 65535] + [
        p for rule in policy.allow for r in rule.ports for p in (r.first, r.last)
    ]
    address = draw(
        st.sampled_from(["0.0.0.0", "::", "10.0.0.5", "2001:db8::5", "127.0.0.1", "::1"])
    )
    return ListeningSocket(
        draw(st.sampled_from(Proto)),
        ip_address(address),
        draw(st.sampled_from(ports)),
        None,
        None,
        v6only=draw(st.booleans()),
    )


@EXAMPLES
@given(st.data())
def test_judge_socket_agrees_with_the_verdict_walk(data: st.DataObject) -> None:
    """For random policies and sockets, the index gives the old walk's verdict and reasons."""
    policy = data.draw(reach_policies())
    sock = data.draw(sockets_for(policy))
    judged = judge_socket(policy, sock, reach_index(policy))
    assert judged == judge_socket(policy, sock)  # with and without a prebuilt index
    if not sock.exposed:
        assert judged.allowed_by == ()
        return
    dual = sock.address == IPv6Address("::") and not sock.v6only
    families = (4, 6) if dual else (sock.address.version,)
    expected = _old_reach(policy, PacketProto(sock.proto.value), sock.port, families, False)
    assert (judged.from_anywhere, judged.allowed_by) == expected


@EXAMPLES
@given(st.data())
def test_judge_published_agrees_with_the_verdict_walk(data: st.DataObject) -> None:
    """For random policies and published ports, the index gives the old walk's answer."""
    policy = data.draw(reach_policies())
    sock = data.draw(sockets_for(policy))
    family = data.draw(st.sampled_from([4, 6]))
    target = "172.17.0.2:80" if family == 4 else "[fd00::2]:80"
    published = PublishedPort(sock.proto, sock.port, target, "ip nat")
    assert published.family == family
    judged = judge_published(policy, published, reach_index(policy))
    expected = _old_reach(policy, PacketProto(sock.proto.value), sock.port, (family,), True)
    assert (judged.from_anywhere, judged.allowed_by) == expected


def _big_policy(sources: int) -> Policy:
    """Ports 22 and 53 each `from` the same `sources` disjoint /30s, and 443 from anywhere."""
    nets = tuple(IPv4Network(((10 << 24) + 4 * n, 30)) for n in range(sources))

    def entry(port: int, from_: tuple[Network, ...] | None) -> AllowRule:
        return AllowRule(
            ports=(PortRange(port, port),),
            protos=(Proto.TCP, Proto.UDP),
            sources=from_,
            source_names=("@big",) if from_ is not None else (),
            interface=None,
            limit=None,
            comment=None,
            service=None,
            location=Location("big.yaml", port, 5),
        )

    allow = (entry(22, nets), entry(53, nets), entry(443, None))
    return Policy("big.yaml", 1, None, DefaultVerdict.DROP, IcmpMode.ESSENTIAL, False, (), allow)


LISTENERS = tuple(
    ListeningSocket(proto, ip_address(address), port, None, None)
    for proto in Proto
    for address in ("0.0.0.0", "::")
    for port in (22, 53, 443, 8080)
)


def _best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of `runs` timings of `work` (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def _judge_all(policy: Policy, index: ReachIndex) -> list[SocketPlan]:
    """Judge every LISTENERS socket with a prebuilt index."""
    return [judge_socket(policy, s, index) for s in LISTENERS]


def test_judging_time_does_not_grow_with_from_lists() -> None:
    """With the index built, judging sockets costs the same for 1 and 100,000 sources."""
    timings = []
    for size in (1, 100_000):
        policy = _big_policy(size)
        index = reach_index(policy)
        judged = [judge_socket(policy, s, index) for s in LISTENERS]
        assert {j.socket.port for j in judged if j.allowed_by} == {22, 53, 443}
        timings.append(_best_of(7, partial(_judge_all, policy, index)))
    small, big = timings
    # Walking the list would make this ratio about 10**5; the bound leaves room for noise.
    assert big < 5 * small + 0.002, f"1 source: {small:.6f} s, 100k sources: {big:.6f} s"
