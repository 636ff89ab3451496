"""The Windows Firewall rule model shared by the netsh and PowerShell renderers.

Windows Firewall evaluates block rules before allow rules, so an allow rule that another
program adds cannot open a port that a block rule covers. portguard therefore renders BLOCK
rules over everything the policy does not allow, next to ALLOW rules for what it does:
- per protocol, a block over the complement (in 1-65535) of every port any entry allows;
- for ports open only to `from` sources, a block from the complement of those sources
  (per IP family) on exactly those ports;
- allow rules for the open ports, the (sources, ports) elements and ICMP.

These are inbound rules for this host's own traffic. Windows has no DNAT-published ports in
the Linux sense, so `forwarded` cannot be rendered: ports NAT'd to a VM or container (WinNAT
static mappings: Hyper-V, WSL, Docker on Windows) are not filtered by these rules, while a
`netsh interface portproxy` port is an ordinary local listener and obeys them like any other.
Under `forwarded: filter` (the default) the rendering says so in a note; under
`forwarded: ignore` Windows already does what the policy asks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    summarize_address_range,
)
from itertools import pairwise
from typing import TypeVar

from portguard.errors import PolicyError
from portguard.model import (
    AllowRule,
    DefaultVerdict,
    ForwardedMode,
    IcmpMode,
    Network,
    Policy,
    PortRange,
    Proto,
)
from portguard.render.layout import (
    PolicyLayout,
    SourcePorts,
    complement,
    layout_policy,
    merge_ranges,
)

__all__ = [
    "DHCP_CLIENT_PORTS",
    "FORWARDED_NOTE",
    "GROUP",
    "ICMPV4_ESSENTIAL_TYPES",
    "ICMPV6_ESSENTIAL_TYPES",
    "ICMPV6_ND_TYPES",
    "MAX_ADDRESSES_PER_RULE",
    "MAX_PORT_ITEMS_PER_RULE",
    "Action",
    "WindowsRule",
    "WindowsRuleset",
    "address_complement",
    "build_windows_rules",
    "chunked",
    "generation",
    "windows_text",
]

GROUP = "portguard"
# No Microsoft document found states a cap on LocalPort items; 100 is deliberately far below
# the 1000-entry cap reported for a rule's address list (see README "Windows": sources).
MAX_PORT_ITEMS_PER_RULE = 100
MAX_ADDRESSES_PER_RULE = 1000
# Type numbers for verdict.ESSENTIAL_ICMPV4 / ESSENTIAL_ICMPV6(+ link-local ND).
ICMPV4_ESSENTIAL_TYPES = (3, 8, 11, 12)
ICMPV6_ESSENTIAL_TYPES = (1, 2, 3, 4, 128, 130, 131, 132, 134, 135, 136, 143)
T = TypeVar("T")
UNSAFE_WINDOWS_CHARS = re.compile(r"[^A-Za-z0-9 _.,:;/@()+=#*?\[\]-]")
MAX_DESCRIPTION = 120
# DHCP client ports (v4, v6): never in a portguard block, so Windows' DHCP-In rules keep working.
DHCP_CLIENT_PORTS = (PortRange(68, 68), PortRange(546, 546))
# ICMPv6 neighbour discovery (RS, RA, NS, NA): never in a portguard block (icmp: none).
ICMPV6_ND_TYPES = (133, 134, 135, 136)
FORWARDED_NOTE = (
    "forwarded: filter does not apply to Windows Firewall: ports NATed to a VM or container"
    " (WinNAT static mappings: Hyper-V, WSL, Docker) are not filtered by these inbound rules;"
    " a netsh interface portproxy port is a local listener and obeys them like any port"
)


class Action(StrEnum):
    """What a Windows Firewall rule does with what it matches."""

    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True)
class WindowsRule:
    """One inbound Windows Firewall rule; empty tuples mean "any"."""

    key: str  # unique within a ruleset, e.g. "block-tcp-1"; the name suffix
    action: Action
    protocol: str  # "TCP", "UDP", "ICMPv4", "ICMPv6"
    local_ports: tuple[PortRange, ...]
    remote_addresses: tuple[Network, ...]
    icmp_types: tuple[int, ...]
    interface: str | None
    description: str


@dataclass(frozen=True)
class WindowsRuleset:
    """Every rule for a policy, what could not be expressed exactly, and a content hash."""

    rules: tuple[WindowsRule, ...]
    notes: tuple[str, ...]
    fingerprint: str  # 8 hex digits; changes whenever any rule changes


def generation(fingerprint: str, slot: str = "a") -> str:
    """The name part that tells one applied rule set from the next: fingerprint and slot."""
    return f"{fingerprint}.{slot}"


def chunked(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """`items` cut into consecutive tuples of at most `size` (one empty tuple if none)."""
    if not items:
        return [()]
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def windows_text(text: str, limit: int | None = MAX_DESCRIPTION) -> str:
    """Free text made safe inside single or double quotes (and batch `rem`) on Windows."""
    return UNSAFE_WINDOWS_CHARS.sub("_", text)[:limit]


def build_windows_rules(policy: Policy, *, interfaces: bool = True) -> WindowsRuleset:
    """The block and allow rules that give `policy` its meaning in Windows Firewall.

    With `interfaces=False` (netsh, which has no interface-alias match) an entry with
    `interface` is refused with its location.
    """
    notes: list[str] = list(_policy_notes(policy))
    for number, rule in enumerate(policy.allow, 1):
        notes.extend(_entry_notes(number, rule))
    # A limit cannot be expressed (see the notes): without it the entry is a plain or sourced one.
    view = replace(policy, allow=tuple(_without_limit(rule) for rule in policy.allow))
    layout = layout_policy(view)
    rules: list[WindowsRule] = []
    for _, rule in layout.special:
        if rule.interface is not None and not interfaces:
            raise PolicyError(
                rule.location,
                "`interface` cannot be expressed with netsh (no interface-alias match);"
                " use --target powershell",
            )
    rules.extend(_deny_rules(policy))
    for proto in Proto:
        rules.extend(_proto_rules(view, layout, proto))
    rules.extend(_icmp_rules(policy.icmp))
    fingerprint = hashlib.sha256(repr(rules).encode()).hexdigest()[:8]
    return WindowsRuleset(rules=tuple(rules), notes=tuple(notes), fingerprint=fingerprint)


def _deny_rules(policy: Policy) -> list[WindowsRule]:
    """`deny:` as block rules from the denied sources on every port and ICMP (block wins)."""
    denied = policy.denied()
    v4 = list(collapse_addresses(n for n in denied if isinstance(n, IPv4Network)))
    v6 = list(collapse_addresses(n for n in denied if isinstance(n, IPv6Network)))
    groups: list[tuple[str, Sequence[Network]]] = [
        ("TCP", [*v4, *v6]),
        ("UDP", [*v4, *v6]),
        ("ICMPv4", v4),
        ("ICMPv6", v6),
    ]
    rules: list[WindowsRule] = []
    for protocol, networks in groups:
        for n, chunk in enumerate(chunked(networks, MAX_ADDRESSES_PER_RULE), 1):
            if chunk:
                rules.append(
                    WindowsRule(
                        f"deny-{protocol.lower()}-{n}", Action.BLOCK, protocol, (), chunk, (),
                        None, "sources the policy denies",
                    )
                )  # fmt: skip
    return rules


def _proto_rules(policy: Policy, layout: PolicyLayout, proto: Proto) -> list[WindowsRule]:
    # An interface entry with an empty `from` allows no one: it opens nothing anywhere.
    special = [rule for _, rule in layout.special if rule.sources != () and proto in rule.protos]
    tag = proto.value
    label = proto.value.upper()
    open_ports = layout.open_for(proto)
    sourced = [*layout.sourced_for(proto, 4), *layout.sourced_for(proto, 6)]
    special_ports = [r for rule in special for r in rule.ports]
    allowed_somehow = merge_ranges([*open_ports, *(e.ports for e in sourced), *special_ports])
    # DHCP client replies are left to the default action and Windows' own DHCP-In rules.
    exempt = DHCP_CLIENT_PORTS if proto is Proto.UDP else ()
    rules: list[WindowsRule] = []
    unallowed = complement(merge_ranges([*allowed_somehow, *exempt]))
    for n, ports in enumerate(chunked(unallowed, MAX_PORT_ITEMS_PER_RULE), 1):
        if ports:
            rules.append(
                WindowsRule(
                    f"block-{tag}-{n}", Action.BLOCK, label, ports, (), (), None,
                    "ports no entry allows",
                )
            )  # fmt: skip
    for n, ports in enumerate(chunked(open_ports, MAX_PORT_ITEMS_PER_RULE), 1):
        if ports:
            rules.append(
                WindowsRule(
                    f"allow-{tag}-{n}", Action.ALLOW, label, ports, (), (), None,
                    "ports open to any source",
                )
            )  # fmt: skip
    # An interface entry open to any source cannot get a source block: it would hit that
    # interface too. One with `from` adds its sources to the sources not blocked on its ports.
    any_source = [r for rule in special if rule.sources is None for r in rule.ports]
    also = [SourcePorts(r, rule.sources) for rule in special if rule.sources for r in rule.ports]
    rules.extend(_sourced_rules(proto, merge_ranges([*open_ports, *any_source]), sourced, also))
    for number, rule in layout.special:
        if proto in rule.protos and rule.sources != ():
            rules.extend(_special_rules(number, rule, proto))
    return rules


def _sourced_rules(
    proto: Proto,
    unblockable: tuple[PortRange, ...],
    elements: Sequence[SourcePorts],
    also: Sequence[SourcePorts] = (),
) -> list[WindowsRule]:
    """Allow each (sources, ports) element; block sources neither it nor `also` lets in.

    Nothing is blocked on `unblockable` ports (open to any source somewhere).
    """
    tag, label = proto.value, proto.value.upper()
    rules: list[WindowsRule] = []
    count = 0
    for element in elements:
        for sources in chunked(element.sources, MAX_ADDRESSES_PER_RULE):
            count += 1
            rules.append(
                WindowsRule(
                    f"allow-{tag}-from-{count}", Action.ALLOW, label, (element.ports,),
                    sources, (), None, "ports open to the listed sources",
                )
            )  # fmt: skip
    # Cut the port axis where the allowed sources change; block the rest of the address space.
    every = [*elements, *also]
    ranges = [*(e.ports for e in every), *unblockable]
    edges = sorted({r.first for r in ranges} | {r.last + 1 for r in ranges})
    by_blocked: dict[tuple[Network, ...], list[PortRange]] = {}
    for start, stop in pairwise(edges):
        piece = PortRange(start, stop - 1)
        if any(r.first <= start and piece.last <= r.last for r in unblockable):
            continue
        allowed = [n for e in every if e.ports.first <= start <= e.ports.last for n in e.sources]
        if not allowed:
            continue
        by_blocked.setdefault(address_complement(allowed), []).append(piece)
    count = 0
    for blocked, pieces in by_blocked.items():
        for ports in chunked(merge_ranges(pieces), MAX_PORT_ITEMS_PER_RULE):
            for addresses in chunked(blocked, MAX_ADDRESSES_PER_RULE):
                count += 1
                rules.append(
                    WindowsRule(
                        f"block-{tag}-from-{count}", Action.BLOCK, label, ports, addresses,
                        (), None, "other sources on ports open to listed sources only",
                    )
                )  # fmt: skip
    return rules


def address_complement(networks: Iterable[Network]) -> tuple[Network, ...]:
    """Every address (IPv4 and IPv6) outside `networks`, as collapsed CIDRs."""
    v4 = list(collapse_addresses(n for n in networks if isinstance(n, IPv4Network)))
    v6 = list(collapse_addresses(n for n in networks if isinstance(n, IPv6Network)))
    return _family_gaps(v4, IPv4Address, 32) + _family_gaps(v6, IPv6Address, 128)


def _family_gaps(
    networks: list[IPv4Network] | list[IPv6Network],
    address_type: type[IPv4Address] | type[IPv6Address],
    bits: int,
) -> tuple[Network, ...]:
    gaps: list[Network] = []
    cursor = 0
    top = (1 << bits) - 1
    for net in networks:
        first, last = int(net.network_address), int(net.broadcast_address)
        if first > cursor:
            gaps.extend(summarize_address_range(address_type(cursor), address_type(first - 1)))
        cursor = max(cursor, last + 1)
    if cursor <= top:
        gaps.extend(summarize_address_range(address_type(cursor), address_type(top)))
    return tuple(gaps)


def _special_rules(number: int, rule: AllowRule, proto: Proto) -> list[WindowsRule]:
    sources = rule.sources or ()
    label = proto.value.upper()
    description = f"entry {number}" + (f": {rule.comment}" if rule.comment else "")
    rules: list[WindowsRule] = []
    for ports in chunked(merge_ranges(rule.ports), MAX_PORT_ITEMS_PER_RULE):
        for part, addresses in enumerate(chunked(sources, MAX_ADDRESSES_PER_RULE), 1):
            rules.append(
                WindowsRule(
                    f"allow-{proto.value}-entry{number}-{part}", Action.ALLOW, label, ports,
                    addresses, (), rule.interface, windows_text(description),
                )
            )  # fmt: skip
    return rules


def _icmp_rules(mode: IcmpMode) -> list[WindowsRule]:
    if mode is IcmpMode.NONE:
        return [
            WindowsRule("block-icmpv4", Action.BLOCK, "ICMPv4", (), (), (), None, "icmp: none"),
            WindowsRule(
                "block-icmpv6",
                Action.BLOCK,
                "ICMPv6",
                (),
                (),
                tuple(t for t in range(256) if t not in ICMPV6_ND_TYPES),
                None,
                "icmp: none (neighbour discovery left to Windows' own rules)",
            ),
        ]
    v4: tuple[int, ...] = () if mode is IcmpMode.ALL else ICMPV4_ESSENTIAL_TYPES
    v6: tuple[int, ...] = () if mode is IcmpMode.ALL else ICMPV6_ESSENTIAL_TYPES
    text = f"icmp: {mode.value}"
    return [
        WindowsRule("allow-icmpv4", Action.ALLOW, "ICMPv4", (), (), v4, None, text),
        WindowsRule("allow-icmpv6", Action.ALLOW, "ICMPv6", (), (), v6, None, text),
    ]


def _policy_notes(policy: Policy) -> Iterable[str]:
    if policy.default is DefaultVerdict.REJECT:
        yield (
            "default: reject is rendered as block: Windows Firewall cannot answer with a"
            " TCP reset or ICMP unreachable"
        )
    if policy.log:
        yield (
            "log: true is not rendered: logging is a host-wide profile setting"
            " (Set-NetFirewallProfile -LogBlocked True) that portguard does not touch"
        )
    if policy.forwarded is ForwardedMode.FILTER:
        yield FORWARDED_NOTE
    if policy.icmp is IcmpMode.ESSENTIAL:
        yield (
            "icmp: essential is allow-only (no block over the other types): an allow rule"
            " another program adds for ICMP is not overridden"
        )


def _without_limit(rule: AllowRule) -> AllowRule:
    return rule if rule.interface is not None else replace(rule, limit=None)


def _entry_notes(number: int, rule: AllowRule) -> Iterable[str]:
    where = f"entry {number} (line {rule.location.line})"
    if rule.limit is not None:
        yield (
            f"{where}: limit {rule.limit} cannot be expressed in Windows Firewall; the entry"
            " is allowed without a limit (portguard enforce applies it)"
        )
    if rule.interface is not None:
        yield (
            f"{where}: interface {rule.interface}: on other interfaces its ports are"
            + (
                " blocked from every source it does not list"
                if rule.sources
                else " not blocked by portguard (Windows has no 'every other interface' match):"
                " they rely on the default inbound action (Block), and another program's"
                " allow rule for them is not overridden there"
            )
        )
