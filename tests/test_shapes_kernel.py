"""The rendered rule shapes give verdict.py's answer on real packets in a real kernel.

Random policies with `from` lists, rendered with every port range in the shared
`saddr . dport` set, with every range in its own address set, and in between (the
`piece_sources_max` knob of render_table), are loaded in a lab's host namespace. The scanner
sends one UDP datagram per probe from a chosen source address (IP_TRANSPARENT, a fresh source
port each); a second table in the host, hooked after portguard's chain, records in a dynamic
set every (source, port) that portguard's chain let through. That set must be exactly the
probes verdict.py accepts.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portguard.model import AllowRule, Network, Policy
from portguard.render.nftables import render_table, transaction
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, verdict
from tests.netns import HOST_V4, HOST_V6, Lab, can_make_netns, lab
from tests.test_verdict import policies, rules

pytestmark = pytest.mark.netns

EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Address = IPv4Address | IPv6Address
SEEN_TABLE = """\
table inet pgprobe {
\tset seen4 { type ipv4_addr . inet_service; size 65535; flags dynamic; }
\tset seen6 { type ipv6_addr . inet_service; size 65535; flags dynamic; }
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\tudp dport 1-65535 update @seen4 { ip saddr . udp dport }
\t\tudp dport 1-65535 update @seen6 { ip6 saddr . udp dport }
\t}
}
"""
# Sends one datagram per (source, port) from argv's JSON, each from its own source port.
SENDER = """
import json, socket, sys
IP_TRANSPARENT, IPV6_TRANSPARENT = 19, 75
probes, host4, host6, first_port = json.loads(sys.argv[1])
for n, (source, port) in enumerate(probes):
    v6 = ":" in source
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
    s.bind((source, first_port + n))
    s.sendto(b"probe", (host6 if v6 else host4, port))
    s.close()
"""


@pytest.fixture(scope="module")
def shape_lab() -> Iterator[Lab]:
    """One lab for the module, the host's probe-recording table loaded, rp_filter off."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make throwaway network namespaces")
    with lab("pgsk") as pair:
        for key in ("all", "default", pair.host_if):
            pair.host.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0"])
        pair.host.run(["nft", "-f", "-"], input_text=SEEN_TABLE)
        # The scanner must not resolve the host from a probe's foreign source: pin the host.
        link = json.loads(pair.host.run(["ip", "-j", "link", "show", pair.host_if]).stdout)
        mac = link[0]["address"]
        for address in (HOST_V4, HOST_V6):
            pin = ["ip", "neigh", "replace", address, "lladdr", mac, "dev", pair.scanner_if]
            pair.scanner.run([*pin, "nud", "permanent"])
        # Replies (ICMP port unreachable, resets) go to the probe sources via the scanner.
        pair.host.run(["ip", "route", "add", "default", "dev", pair.host_if])
        pair.host.run(["ip", "-6", "route", "add", "default", "dev", pair.host_if])
        yield pair


@st.composite
def many_networks(draw: st.DrawFn) -> tuple[Network, ...]:
    """Up to 80 networks near 10.0.0.0/8 and 2001:db8::/32, so lists cross any threshold."""
    count = draw(st.integers(0, 80))
    out: list[Network] = []
    for _ in range(count):
        if draw(st.integers(0, 3)):
            start = (10 << 24) | draw(st.integers(0, 2**16 - 1)) << 8
            out.append(IPv4Network((start, draw(st.sampled_from([24, 26, 30, 32]))), strict=False))
        else:
            start = (0x20010DB8 << 96) | draw(st.integers(0, 2**16 - 1)) << 64
            out.append(
                IPv6Network((start, draw(st.sampled_from([56, 64, 127, 128]))), strict=False)
            )
    return tuple(out)


@st.composite
def sourced_policies(draw: st.DrawFn) -> Policy:
    """A policy of plain entries (no interface or limit), most with a `from` list."""
    policy = draw(policies(max_rules=0))
    allow: list[AllowRule] = []
    for line in range(draw(st.integers(1, 5))):
        rule = draw(rules(line=4 + 2 * line, special=False))
        if draw(st.integers(0, 3)):
            sources = draw(many_networks())
            rule = replace(rule, sources=sources, source_names=tuple(map(str, sources)))
        allow.append(rule)
    return replace(policy, allow=tuple(allow))


@st.composite
def probes_for(draw: st.DrawFn, policy: Policy) -> list[tuple[Address, int]]:
    """Sources in, at the edges of and outside the lists; ports at the edges of the ranges."""
    ports = {22, 65535}
    sources: set[Address] = {IPv4Address("10.255.255.1"), IPv6Address("2001:db8:ffff::1")}
    for rule in policy.allow:
        for r in rule.ports:
            ports |= {max(r.first - 1, 1), r.first, r.last, min(r.last + 1, 65535)}
        for net in rule.sources or ():
            sources |= {net.network_address, net.broadcast_address}
            outside = int(net.broadcast_address) + 1
            if outside <= (2**32 - 1 if net.version == 4 else 2**128 - 1):
                sources.add(ip_address(outside) if net.version == 4 else IPv6Address(outside))
    sources = {s for s in sources if not s.is_multicast and not s.is_unspecified}
    chosen_sources = draw(
        st.lists(st.sampled_from(sorted(sources, key=str)), min_size=1, max_size=6, unique=True)
    )
    chosen_ports = draw(
        st.lists(st.sampled_from(sorted(ports)), min_size=1, max_size=5, unique=True)
    )
    return list(itertools.product(chosen_sources, chosen_ports))


def _seen(pair: Lab) -> set[tuple[str, int]]:
    """The (source, port) pairs the recording table saw, then emptied for the next example."""
    seen: set[tuple[str, int]] = set()
    for name in ("seen4", "seen6"):
        listing = pair.host.run(["nft", "-j", "list", "set", "inet", "pgprobe", name]).stdout
        for item in json.loads(listing)["nftables"]:
            for element in item.get("set", {}).get("elem", []):
                value = (
                    element["elem"]["val"]
                    if isinstance(element, dict) and "elem" in element
                    else element
                )
                address, port = value["concat"]
                seen.add((str(ip_address(address)), int(port)))
        pair.host.run(["nft", "flush", "set", "inet", "pgprobe", name])
    return seen


SOURCE_PORTS = itertools.count()


@EXAMPLES
@given(data=st.data())
def test_rule_shapes_agree_with_verdict_on_real_packets(
    shape_lab: Lab, data: st.DataObject
) -> None:
    """Each shape passes exactly the probes verdict.py accepts (UDP, IPv4 and IPv6)."""
    policy = data.draw(sourced_policies())
    most = data.draw(st.sampled_from([0, 3, 64, sys.maxsize]))
    pairs = data.draw(probes_for(policy))
    table = render_table(policy, piece_sources_max=most)
    shape_lab.host.run(["nft", "-f", "-"], input_text=transaction(table.text()))
    first_port = 20000 + (next(SOURCE_PORTS) * 40) % 40000
    argv = [
        sys.executable,
        "-c",
        SENDER,
        json.dumps([[[str(s), p] for s, p in pairs], HOST_V4, HOST_V6, first_port]),
    ]
    shape_lab.scanner.run(argv, timeout=60)
    expected = {
        (str(source), port)
        for source, port in pairs
        if verdict(
            policy,
            Packet(PacketProto.UDP, source, shape_lab.host_if, dport=port, state=ConnState.NEW),
        )
        is Verdict.ACCEPT
    }
    assert _seen(shape_lab) == expected, table.text()
