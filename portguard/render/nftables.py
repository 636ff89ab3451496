"""Render a Policy as the typed `inet portguard` table (render/nft_table.py) and its text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from portguard import __version__
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
from portguard.policy.load import require_linux_interfaces
from portguard.policy.networks import NetworkSet, in_family, network_texts, union
from portguard.render.deny import (
    FAMILY_MATCH,
    FAMILY_TYPE,
    ban_rules,
    ban_sets,
    deny_rules,
    deny_sets,
)
from portguard.render.layout import PolicyLayout, SourcePorts, layout_policy, merge_ranges
from portguard.render.nft_table import (
    BLOCKED_SET,
    CHAIN_NAME,
    TABLE_FAMILY,
    TABLE_NAME,
    NftRule,
    NftSet,
    NftTable,
    SetRef,
)
from portguard.verdict import (
    ESSENTIAL_ICMPV4,
    ESSENTIAL_ICMPV6,
    ESSENTIAL_ICMPV6_LINK_LOCAL,
    LINK_LOCAL_HOP_LIMIT,
)

__all__ = [
    "CHAIN_NAME",
    "TABLE_FAMILY",
    "TABLE_NAME",
    "render_nftables",
    "render_table",
    "safe_comment",
    "transaction",
]

LOG_PREFIX = "portguard: "
# Drops (`log: true`) and logged entries' accepts also go to this NFLOG group, which
# `portguard log` reads over netlink: unlike the kernel log (nf_log), it works in every
# network namespace. With no reader bound the kernel discards those copies.
NFLOG_GROUP = 4711
ACCEPT_LOG_PREFIX = "portguard accept line {line}: "
# Every allow entry's rule counts what it accepts (new connections: established packets were
# accepted earlier); the stateless listing drift compares shows no counter values.
ACCEPT = " counter accept"
BLOCKED_SIZE = 4096
BLOCKED_TIMEOUT = "1d"  # a port not probed for a day leaves the set
METER_SIZE = 65535
# Sources above which a port range gets its own address set and rule (see _split_pieces).
PIECE_SOURCES_MAX = 64
UNSAFE_COMMENT_CHARS = re.compile(r"[^A-Za-z0-9 _.,:;/@()+=#%*!?'<>\[\]-]")
MAX_NFT_COMMENT = 120
FAMILY_NFPROTO = MappingProxyType({4: "ipv4", 6: "ipv6"})
METER_TIMEOUT = MappingProxyType({"second": "1m", "minute": "1m", "hour": "1h", "day": "1d"})


def safe_comment(text: str) -> str:
    """Free text reduced to characters that cannot end a quoted nft string or a line."""
    return UNSAFE_COMMENT_CHARS.sub("_", text)[:MAX_NFT_COMMENT]


def transaction(table_text: str) -> str:
    """The atomic replace: create the table if absent, delete it, add the new one, in one batch."""
    return (
        f"add table {TABLE_FAMILY} {TABLE_NAME}\n"
        f"delete table {TABLE_FAMILY} {TABLE_NAME}\n"
        f"{table_text}"
    )


def render_nftables(policy: Policy) -> str:
    """The complete `table inet portguard { ... }` text for `policy`."""
    return render_table(policy).text()


def render_table(policy: Policy, *, piece_sources_max: int = PIECE_SOURCES_MAX) -> NftTable:
    """`policy` as the typed table value that apply loads (see render/nft_table.py).

    The input chain judges traffic to this host. Unless `forwarded: ignore`, a forward chain
    judges the new TCP and UDP connections this host DNATs elsewhere (published ports) by the
    same allow entries and sets, on the original destination port (`ct original proto-dst`).
    `piece_sources_max`: see _split_pieces (tests and bench/ vary it).
    """
    require_linux_interfaces(policy)
    layout = Shapes(layout_policy(policy), piece_sources_max)
    sets = [*ban_sets(), *deny_sets(policy), *_sets(layout)]
    rules: list[NftRule] = [
        *ban_rules(),
        _rule("ct state invalid drop"),
        _rule("ct state { established, related } accept"),
        *deny_rules(policy),
        *(_rule(text) for text in _icmp_rules(policy.icmp)),
        *_allow_rules(layout, INPUT_PORT),
        *_final_rules(policy, INPUT_PORT),
    ]
    forward: list[NftRule] = []
    if policy.forwarded is ForwardedMode.FILTER:
        forward = [
            # A bit test: `ct status != dnat` would compare the whole status word (always true).
            _rule("ct status & dnat == 0 accept"),
            *ban_rules(),
            _rule("ct state != new accept"),
            _rule("meta l4proto != { tcp, udp } accept"),
            *deny_rules(policy),
            *_allow_rules(layout, FORWARD_PORT),
            *_final_rules(policy, FORWARD_PORT),
            # The chain's policy is accept (routed traffic is not portguard's), so a drop
            # default needs its own rule here.
            *([_rule("drop")] if policy.default is DefaultVerdict.DROP else []),
        ]
    header = (
        f"Rendered by portguard {__version__} from {safe_comment(policy.path)}.",
        "apply loads the sets, then swaps the rules atomically; edit the policy, not this text.",
        *_entry_summaries(policy),
    )
    return NftTable(header=header, sets=tuple(sets), rules=tuple(rules), forward=tuple(forward))


@dataclass(frozen=True)
class Shapes:
    """The policy's layout and the size above which a port range gets its own address set."""

    layout: PolicyLayout
    piece_sources_max: int

    def open_for(self, proto: Proto) -> tuple[PortRange, ...]:
        """The ports open to anyone for `proto`."""
        return self.layout.open_for(proto)

    @property
    def special(self) -> tuple[tuple[int, AllowRule], ...]:
        """The entries with an interface and/or a limit."""
        return self.layout.special

    def pieces(
        self, proto: Proto, family: int
    ) -> tuple[tuple[SourcePorts, ...], tuple[SourcePorts, ...]]:
        """(small, big) pieces of `proto` and `family`: see _split_pieces."""
        return _split_pieces(self.layout.sourced_for(proto, family), self.piece_sources_max)


def _sets(layout: Shapes) -> list[NftSet]:
    """Every named set of the table, shared by the input and forward chains."""
    sets: list[NftSet] = []
    for proto in Proto:
        if layout.open_for(proto):
            sets.append(
                _interval_set(f"open_{proto.value}", "inet_service", layout.open_for(proto))
            )
    for proto in Proto:
        for family in (4, 6):
            small, big = layout.pieces(proto, family)
            if small:
                kind = f"{FAMILY_TYPE[family]} . inet_service"
                name = f"from{family}_{proto.value}"
                sets.append(_interval_set(name, kind, _concat_elements(small)))
            for index, (_ports, sources) in enumerate(_by_sources(big), start=1):
                name = f"from{family}_{proto.value}_{index}"
                sets.append(_address_set(name, FAMILY_TYPE[family], sources))
    for number, rule in layout.special:
        sets.extend(_special_sets(number, rule))
    sets.append(
        NftSet(
            BLOCKED_SET,
            "inet_proto . inet_service",
            "dynamic,timeout",
            size=BLOCKED_SIZE,
            timeout=BLOCKED_TIMEOUT,
        )
    )
    return sets


def _allow_rules(layout: Shapes, port: PortMatch) -> list[NftRule]:
    """The allow entries' rules, matching the destination port the way `port` says."""
    rules: list[NftRule] = []
    for proto in Proto:
        if layout.open_for(proto):
            rules.append(_rule(port.for_proto(proto.value), SetRef(f"open_{proto.value}"), ACCEPT))
    for proto in Proto:
        for family in (4, 6):
            small, big = layout.pieces(proto, family)
            if small:
                match = port.for_proto(proto.value, f"{FAMILY_MATCH[family]} saddr . ")
                rules.append(_rule(match, SetRef(f"from{family}_{proto.value}"), ACCEPT))
            for index, (ports, _sources) in enumerate(_by_sources(big), start=1):
                match = f"{port.for_proto(proto.value)}{ports} {FAMILY_MATCH[family]} saddr "
                rules.append(_rule(match, SetRef(f"from{family}_{proto.value}_{index}"), ACCEPT))
    for number, rule in layout.special:
        rules.extend(_special_rules(number, rule, port))
    return rules


def _final_rules(policy: Policy, port: PortMatch) -> list[NftRule]:
    """The log rule, the blocked counters, and the default verdict's rules (drop is the
    chain's policy or a rule)."""
    rules: list[NftRule] = []
    if policy.log:
        rules.append(
            _rule(
                f'limit rate 10/second burst 20 packets log prefix "{LOG_PREFIX}" level info'
                f' log prefix "{LOG_PREFIX}" group {NFLOG_GROUP}'
            )
        )
    key = "ct original proto-dst" if port.original else "th dport"
    rules.append(
        _rule(
            "ct state new meta l4proto { tcp, udp } update ",
            SetRef(BLOCKED_SET),
            f" {{ meta l4proto . {key} counter }}",
        )
    )
    rules.append(_rule("counter"))
    if policy.default is DefaultVerdict.REJECT:
        rules.append(_rule("meta l4proto tcp reject with tcp reset"))
        rules.append(_rule("reject with icmpx port-unreachable"))
    return rules


@dataclass(frozen=True)
class PortMatch:
    """How a chain matches the destination port: the packet's own, or the pre-DNAT one."""

    original: bool  # True in the forward chain: the port the client connected to

    def for_proto(self, proto: str, prefix: str = "") -> str:
        """The match for one protocol, `prefix` (a source match) in front of the port."""
        if self.original:
            return f"meta l4proto {proto} {prefix}ct original proto-dst "
        return f"{prefix}{proto} dport "

    def for_protos(self, protos_expr: str) -> str:
        """The match after a `meta l4proto ...` expression."""
        return f"{protos_expr} {'ct original proto-dst' if self.original else 'th dport'} "


INPUT_PORT = PortMatch(original=False)
FORWARD_PORT = PortMatch(original=True)


def _rule(*parts: str | SetRef, comment: str | None = None) -> NftRule:
    return NftRule(parts=tuple(parts), comment=comment)


def _entry_summaries(policy: Policy) -> list[str]:
    lines = []
    for number, rule in enumerate(policy.allow, start=1):
        protos = "+".join(p.value for p in rule.protos)
        text = f"entry {number} (line {rule.location.line}): {protos} {rule.ports_text()}"
        if rule.source_names:
            text += f" from {', '.join(rule.source_names)}"
        if rule.interface:
            text += f" on {rule.interface}"
        if rule.limit:
            text += f" limit {rule.limit}"
        if rule.comment:
            text += f" - {rule.comment}"
        lines.append(safe_comment(text))
    return lines


def _interval_set(name: str, kind: str, elements: Iterable[object]) -> NftSet:
    return NftSet(name, kind, "interval", tuple(str(item) for item in elements))


def _address_set(name: str, kind: str, networks: Sequence[Network]) -> NftSet:
    """An interval set of addresses, written from a NetworkSet's integers (no objects)."""
    return NftSet(name, kind, "interval", tuple(network_texts(networks)))


def _split_pieces(
    pieces: tuple[SourcePorts, ...], most: int
) -> tuple[tuple[SourcePorts, ...], tuple[SourcePorts, ...]]:
    """(small, big): pieces for the shared `saddr . dport` set, and those with a set each.

    A concatenated interval set (pipapo) costs more per packet the more elements it holds;
    a plain address interval set (rbtree) only O(log n). So a port range open to more than
    `most` (PIECE_SOURCES_MAX) sources gets its own rule (`tcp dport 22 ip saddr @from4_tcp_1`) and
    address set: the per-packet cost stays flat as `from` lists grow (docs/benchmarks.md).
    """
    small = tuple(p for p in pieces if len(p.sources) <= most)
    big = tuple(p for p in pieces if len(p.sources) > most)
    return small, big


def _by_sources(big: tuple[SourcePorts, ...]) -> list[tuple[str, Sequence[Network]]]:
    """The big pieces grouped by their source list: (dport expression, sources) per group.

    Port ranges open to the same sources (`port: [22, 2222]` from one list) share one
    address set and one rule (`tcp dport { 22, 2222 } ip saddr @from4_tcp_1`), so a list is
    loaded into the kernel once, not once per range. Grouped by equality, not by hash: a
    NetworkSet hashes as the tuple of its networks, which it would have to make; the big
    pieces are few.
    """
    groups: list[tuple[Sequence[Network], list[PortRange]]] = []
    for piece in big:
        for sources, ports in groups:
            if sources == piece.sources:
                ports.append(piece.ports)
                break
        else:
            groups.append((piece.sources, [piece.ports]))
    return [
        (str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }", sources)
        for sources, ports in groups
    ]


def _concat_elements(elements: tuple[SourcePorts, ...]) -> Iterable[str]:
    for element in elements:
        ports = element.ports
        for network in network_texts(element.sources):
            yield f"{network} . {ports}"


def _protos_expr(protos: tuple[Proto, ...]) -> str:
    if len(protos) == 1:
        return f"meta l4proto {protos[0].value}"
    return "meta l4proto { " + ", ".join(p.value for p in protos) + " }"


def _special_families(rule: AllowRule) -> list[tuple[int | None, NetworkSet | None]]:
    """One rule per IP family with sources (collapsed) or with a per-source limit, else one."""
    if rule.sources is not None:
        # Collapsed here too: an interval set refuses overlapping elements (::/0 and 2001:db8::/32).
        families = [(family, _collapsed(rule.sources, family)) for family in (4, 6)]
        return [(f, nets) for f, nets in families if nets]
    if rule.limit is not None:
        return [(4, None), (6, None)]
    return [(None, None)]


def _special_sets(number: int, rule: AllowRule) -> list[NftSet]:
    """The sets of an entry with an interface and/or a per-source limit."""
    # A named set, never an inline `{ 8000-8100 }`: anonymous interval sets share the commit
    # window that the two-phase apply closes for named sets by loading them first.
    sets = [_interval_set(f"e{number}_ports", "inet_service", merge_ranges(rule.ports))]
    for family, networks in _special_families(rule):
        if family is not None and networks is not None:
            sets.append(_address_set(f"e{number}_from{family}", FAMILY_TYPE[family], networks))
        if rule.limit is not None and family is not None:
            timeout = METER_TIMEOUT[rule.limit.unit.value]
            meter = f"e{number}_meter{family}"
            sets.append(
                NftSet(
                    meter, FAMILY_TYPE[family], "dynamic,timeout", size=METER_SIZE, timeout=timeout
                )
            )
    return sets


def _special_rules(number: int, rule: AllowRule, port: PortMatch) -> list[NftRule]:
    """The rules of an entry with an interface and/or a per-source limit (meters are shared)."""
    rules: list[NftRule] = []
    comment = safe_comment(rule.comment) if rule.comment else None
    for family, networks in _special_families(rule):
        parts: list[str | SetRef] = [f'iifname "{rule.interface}" '] if rule.interface else []
        if family is not None and networks is not None:
            parts.extend([f"{FAMILY_MATCH[family]} saddr ", SetRef(f"e{number}_from{family}"), " "])
        elif family is not None:
            parts.append(f"meta nfproto {FAMILY_NFPROTO[family]} ")
        parts.extend([port.for_protos(_protos_expr(rule.protos)), SetRef(f"e{number}_ports")])
        if rule.limit is not None and family is not None:
            rate = f"{rule.limit.count}/{rule.limit.unit.value}"
            parts.extend(
                [
                    " update ",
                    SetRef(f"e{number}_meter{family}"),
                    f" {{ {FAMILY_MATCH[family]} saddr limit rate {rate}"
                    f" burst {rule.limit.count} packets }}",
                ]
            )
        if rule.log:
            prefix = ACCEPT_LOG_PREFIX.format(line=rule.location.line)
            parts.append(f' counter log prefix "{prefix}" group {NFLOG_GROUP} accept')
        else:
            parts.append(ACCEPT)
        rules.append(NftRule(tuple(parts), comment))
    return rules


def _collapsed(networks: Sequence[Network], family: int) -> NetworkSet:
    """The networks of one IP family, merged so that no two overlap."""
    return union((in_family(networks, family),))


def _icmp_rules(mode: IcmpMode) -> list[str]:
    if mode is IcmpMode.NONE:
        return []
    if mode is IcmpMode.ALL:
        return ["meta l4proto { icmp, ipv6-icmp } accept"]
    return [
        f"icmp type {{ {', '.join(sorted(ESSENTIAL_ICMPV4))} }} accept",
        f"icmpv6 type {{ {', '.join(sorted(ESSENTIAL_ICMPV6))} }} accept",
        f"icmpv6 type {{ {', '.join(sorted(ESSENTIAL_ICMPV6_LINK_LOCAL))} }}"
        f" ip6 hoplimit {LINK_LOCAL_HOP_LIMIT} accept",
    ]
