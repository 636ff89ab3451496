"""The one meaning of a policy (DESIGN §3): what happens to an inbound packet, in pure Python.

Two kinds of packet are judged here:

- a packet addressed to this host (the input path): DESIGN §3's rules 1-4;
- a packet of a connection that this host DNATs to another address (a published port:
  Docker `-p`, podman, libvirt, kube-proxy), marked `Packet.dnat`, with `dport` the ORIGINAL
  destination port, the one the client connected to. Under `forwarded: filter` (the default)
  a new TCP or UDP connection is judged by the same allow test as input (protocol, original
  port, source in `from`, arriving interface, limit), else the policy's default; loopback
  (rule 1) and ICMP (rule 3) do not apply, and other protocols pass. Under
  `forwarded: ignore` portguard leaves such packets alone: accept.

A source listed under `deny:` has its new packets dropped, on input before ICMP and the
allow entries (any protocol), on DNATed TCP/UDP before the allow test.

Forwarded traffic that was not DNATed (this host routing for others) is never judged by
portguard on any backend: callers do not ask `verdict` about it, and its answer would mean
nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from portguard.model import AllowRule, DefaultVerdict, ForwardedMode, IcmpMode, Policy
from portguard.policy.networks import contains

__all__ = [
    "ESSENTIAL_ICMPV4",
    "ESSENTIAL_ICMPV6",
    "ESSENTIAL_ICMPV6_LINK_LOCAL",
    "LINK_LOCAL_HOP_LIMIT",
    "ConnState",
    "Packet",
    "PacketProto",
    "Verdict",
    "denied",
    "interface_matches",
    "rule_matches",
    "verdict",
]

LOOPBACK_INTERFACE = "lo"

ESSENTIAL_ICMPV4 = frozenset(
    {"echo-request", "destination-unreachable", "time-exceeded", "parameter-problem"}
)
# RFC 4890 §4.4.1 for a host: errors, echo, and multicast listener messages from anywhere ...
ESSENTIAL_ICMPV6 = frozenset(
    {
        "destination-unreachable",
        "packet-too-big",
        "time-exceeded",
        "parameter-problem",
        "echo-request",
        "mld-listener-query",
        "mld-listener-report",
        "mld-listener-done",
        "mld2-listener-report",
    }
)
# ... and neighbour discovery only when it cannot have been routed (hop limit 255).
ESSENTIAL_ICMPV6_LINK_LOCAL = frozenset(
    {"nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"}
)
LINK_LOCAL_HOP_LIMIT = 255


class Verdict(StrEnum):
    """What the firewall does with a packet."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"


class ConnState(StrEnum):
    """Connection-tracking state of a packet."""

    NEW = "new"
    ESTABLISHED = "established"
    RELATED = "related"
    INVALID = "invalid"


class PacketProto(StrEnum):
    """The layer-4 protocol of a packet."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ICMPV6 = "icmpv6"
    OTHER = "other"


@dataclass(frozen=True)
class Packet:
    """An inbound packet, reduced to what the policy can look at.

    `dnat`: the packet belongs to a connection this host DNATs elsewhere (conntrack's
    `ct status dnat`); `dport` is then the original destination port, before translation.
    """

    proto: PacketProto
    source: IPv4Address | IPv6Address
    interface: str
    dport: int | None = None  # TCP/UDP destination port
    state: ConnState = ConnState.NEW
    icmp_type: str | None = None  # nftables' name for the ICMP / ICMPv6 type
    hop_limit: int = 64
    over_limit: bool = False  # the source has used up a `limit` it is subject to
    dnat: bool = False  # forwarded to the address this host DNATs it to; dport is the original


def verdict(policy: Policy, packet: Packet) -> Verdict:
    """Accept when DESIGN §3's rules 1-4 accept the packet, else the policy's default."""
    if packet.dnat:
        return _dnat_verdict(policy, packet)
    if packet.interface == LOOPBACK_INTERFACE:
        return Verdict.ACCEPT
    if packet.state is ConnState.INVALID:
        return Verdict.DROP
    if packet.state in (ConnState.ESTABLISHED, ConnState.RELATED):
        return Verdict.ACCEPT
    if denied(policy, packet):
        return Verdict.DROP
    if _icmp_allowed(policy.icmp, packet):
        return Verdict.ACCEPT
    if any(rule_matches(rule, packet) for rule in policy.allow):
        return Verdict.ACCEPT
    return _default(policy)


def denied(policy: Policy, packet: Packet) -> bool:
    """Whether `deny:` lists the packet's source (its new packets are dropped, any protocol)."""
    return any(contains(item.networks, packet.source) for item in policy.deny)


def _dnat_verdict(policy: Policy, packet: Packet) -> Verdict:
    """A packet this host DNATs elsewhere: the allow test on TCP/UDP under forwarded: filter."""
    if packet.state is ConnState.INVALID:
        # Conntrack cannot translate a packet it finds invalid, so it stays addressed to this
        # host and input's rule 2 drops it, whatever `forwarded` says.
        return Verdict.DROP
    if policy.forwarded is ForwardedMode.IGNORE:
        return Verdict.ACCEPT
    if packet.state in (ConnState.ESTABLISHED, ConnState.RELATED):
        return Verdict.ACCEPT
    if packet.proto not in (PacketProto.TCP, PacketProto.UDP):
        return Verdict.ACCEPT  # only TCP and UDP published ports are filtered
    if denied(policy, packet):
        return Verdict.DROP
    if any(rule_matches(rule, packet) for rule in policy.allow):
        return Verdict.ACCEPT
    return _default(policy)


def _default(policy: Policy) -> Verdict:
    return Verdict.REJECT if policy.default is DefaultVerdict.REJECT else Verdict.DROP


def rule_matches(rule: AllowRule, packet: Packet) -> bool:
    """Whether one allow entry accepts the packet (protocol, port, source, interface, limit)."""
    if packet.proto.value not in {p.value for p in rule.protos} or packet.dport is None:
        return False
    if not any(packet.dport in r for r in rule.ports):
        return False
    if rule.sources is not None and not contains(rule.sources, packet.source):
        return False
    if rule.interface is not None and not interface_matches(rule.interface, packet.interface):
        return False
    return not (rule.limit is not None and packet.over_limit)


def interface_matches(pattern: str, interface: str) -> bool:
    """nftables' iifname match: exact, or a prefix when the pattern ends in '*'."""
    if pattern.endswith("*"):
        return interface.startswith(pattern[:-1])
    return interface == pattern


def _icmp_allowed(mode: IcmpMode, packet: Packet) -> bool:
    if packet.proto not in (PacketProto.ICMP, PacketProto.ICMPV6) or mode is IcmpMode.NONE:
        return False
    if mode is IcmpMode.ALL:
        return True
    if packet.proto is PacketProto.ICMP:
        return packet.icmp_type in ESSENTIAL_ICMPV4
    if packet.icmp_type in ESSENTIAL_ICMPV6:
        return True
    return (
        packet.icmp_type in ESSENTIAL_ICMPV6_LINK_LOCAL and packet.hop_limit == LINK_LOCAL_HOP_LIMIT
    )
