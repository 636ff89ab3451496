"""Render a Policy as one `inet portguard` nftables table (native syntax), and its transaction."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, collapse_addresses
from types import MappingProxyType

from portguard import __version__
from portguard.model import AllowRule, DefaultVerdict, IcmpMode, Network, Policy, Proto
from portguard.render.layout import SourcePorts, layout_policy, merge_ranges
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
    "safe_comment",
    "transaction",
]

TABLE_FAMILY = "inet"
TABLE_NAME = "portguard"
CHAIN_NAME = "input"
LOG_PREFIX = "portguard: "
METER_SIZE = 65535
UNSAFE_COMMENT_CHARS = re.compile(r"[^A-Za-z0-9 _.,:;/@()+=#%*!?'<>\[\]-]")
MAX_NFT_COMMENT = 120
FAMILY_MATCH = MappingProxyType({4: "ip", 6: "ip6"})
FAMILY_TYPE = MappingProxyType({4: "ipv4_addr", 6: "ipv6_addr"})
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
    layout = layout_policy(policy)
    sets: list[str] = []
    rules: list[str] = [
        'iif "lo" accept',
        "ct state invalid drop",
        "ct state { established, related } accept",
        *_icmp_rules(policy.icmp),
    ]
    for proto in Proto:
        if layout.open_for(proto):
            name = f"open_{proto.value}"
            sets.append(_set(name, "inet_service", (str(r) for r in layout.open_for(proto))))
            rules.append(f"{proto.value} dport @{name} accept")
    for proto in Proto:
        for family in (4, 6):
            elements = layout.sourced_for(proto, family)
            if elements:
                name = f"from{family}_{proto.value}"
                kind = f"{FAMILY_TYPE[family]} . inet_service"
                sets.append(_set(name, kind, _concat_elements(elements)))
                rules.append(f"{FAMILY_MATCH[family]} saddr . {proto.value} dport @{name} accept")
    for number, rule in layout.special:
        entry_sets, entry_rules = _special_entry(number, rule)
        sets.extend(entry_sets)
        rules.extend(entry_rules)
    if policy.log:
        rules.append(f'limit rate 10/second burst 20 packets log prefix "{LOG_PREFIX}" level info')
    if policy.default is DefaultVerdict.REJECT:
        rules.append("meta l4proto tcp reject with tcp reset")
        rules.append("reject with icmpx port-unreachable")
    header = [
        f"# Rendered by portguard {__version__} from {safe_comment(policy.path)}.",
        "# apply loads the sets, then swaps the rules atomically; edit the policy, not this text.",
        *(f"# {line}" for line in _entry_summaries(policy)),
    ]
    chain = [
        f"\tchain {CHAIN_NAME} {{",
        "\t\ttype filter hook input priority filter; policy drop;",
        *(f"\t\t{rule}" for rule in rules),
        "\t}",
    ]
    body = [*sets, *chain]
    return "\n".join([*header, f"table {TABLE_FAMILY} {TABLE_NAME} {{", *body, "}"]) + "\n"


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


def _set(name: str, kind: str, elements: Iterable[str], extra: tuple[str, ...] = ()) -> str:
    items = list(elements)
    lines = [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval", *extra]
    if items:
        lines.append("\t\telements = {")
        lines.extend(f"\t\t\t{item}," for item in items)
        lines.append("\t\t}")
    lines.append("\t}")
    return "\n".join(lines)


def _concat_elements(elements: tuple[SourcePorts, ...]) -> Iterable[str]:
    for element in elements:
        for network in element.sources:
            yield f"{network} . {element.ports}"


def _protos_expr(protos: tuple[Proto, ...]) -> str:
    if len(protos) == 1:
        return f"meta l4proto {protos[0].value}"
    return "meta l4proto { " + ", ".join(p.value for p in protos) + " }"


def _special_entry(number: int, rule: AllowRule) -> tuple[list[str], list[str]]:
    """Sets and rules for an entry with an interface and/or a per-source limit."""
    sets: list[str] = []
    rules: list[str] = []
    # A named set, never an inline `{ 8000-8100 }`: anonymous interval sets share the commit
    # window that backends/nft_swap.py closes for named sets by loading them first.
    ports_set = f"e{number}_ports"
    sets.append(_set(ports_set, "inet_service", (str(r) for r in merge_ranges(rule.ports))))
    match_ports = f"{_protos_expr(rule.protos)} th dport @{ports_set}"
    iface = f'iifname "{rule.interface}" ' if rule.interface else ""
    comment = f' comment "{safe_comment(rule.comment)}"' if rule.comment else ""
    families: list[tuple[int | None, list[Network] | None]]
    if rule.sources is not None:
        # Collapsed here too: an interval set refuses overlapping elements (::/0 and 2001:db8::/32).
        families = [(family, _collapsed(rule.sources, family)) for family in (4, 6)]
        families = [(f, nets) for f, nets in families if nets]
    elif rule.limit is not None:
        families = [(4, None), (6, None)]
    else:
        families = [(None, None)]
    for family, networks in families:
        parts = [iface.strip()] if iface else []
        if family is not None and networks is not None:
            set_name = f"e{number}_from{family}"
            sets.append(_set(set_name, FAMILY_TYPE[family], (str(n) for n in networks)))
            parts.append(f"{FAMILY_MATCH[family]} saddr @{set_name}")
        elif family is not None:
            parts.append(f"meta nfproto {FAMILY_NFPROTO[family]}")
        parts.append(match_ports)
        if rule.limit is not None and family is not None:
            meter = f"e{number}_meter{family}"
            timeout = METER_TIMEOUT[rule.limit.unit.value]
            sets.append(
                f"\tset {meter} {{\n\t\ttype {FAMILY_TYPE[family]}\n\t\tsize {METER_SIZE}\n"
                f"\t\tflags dynamic,timeout\n\t\ttimeout {timeout}\n\t}}"
            )
            rate = f"{rule.limit.count}/{rule.limit.unit.value}"
            parts.append(
                f"update @{meter} {{ {FAMILY_MATCH[family]} saddr limit rate {rate}"
                f" burst {rule.limit.count} packets }}"
            )
        rules.append(" ".join(parts) + " accept" + comment)
    return sets, rules


def _collapsed(networks: tuple[Network, ...], family: int) -> list[Network]:
    """The networks of one IP family, merged so that no two overlap."""
    if family == 4:
        return list(collapse_addresses(n for n in networks if isinstance(n, IPv4Network)))
    return list(collapse_addresses(n for n in networks if isinstance(n, IPv6Network)))


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
