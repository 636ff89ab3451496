"""The live table's counters as a fact: per-rule counters by rule kind, and blocked ports.

The rules' counters are dumped over netlink (facts/rule_netlink.py: no set element is
fetched, where any listing through libnftables 1.0.6 fetches them all) and the blocked-port
elements are listed from their one set; where netlink cannot be read, everything comes from
the kernel's stateful text listing of the table (the stateless one that drift compares
prints `counter` without values). Each counted rule is told apart by the sets it names,
written without their generation suffix, so the reading does not depend on rule order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from portguard.backends.nftables import NftKernel
from portguard.facts.rule_netlink import dump_rules
from portguard.facts.ruleset import SET_REFERENCE, listing_lines
from portguard.render.nft_table import BLOCKED_SET, GENERATIONS

__all__ = ["BlockedPort", "LiveCounters", "RuleCounter", "parse_counters", "read_counters"]

COUNTER = re.compile(r"counter packets (\d+) bytes (\d+)")
BRACES = re.compile(r"\{[^{}]*\}")
BLOCKED_ELEMENT = re.compile(
    r"\b(tcp|udp) \. (\d+)\b[^,}]*?counter packets (\d+) bytes (\d+)", re.DOTALL
)


@dataclass(frozen=True)
class RuleCounter:
    """One counted rule: the generation-free sets it names (none: the default verdict's)."""

    chain: str
    sets: tuple[str, ...]
    packets: int
    bytes: int


@dataclass(frozen=True)
class BlockedPort:
    """Blocked new connections to one protocol and port (the dynamic `blocked` set)."""

    proto: str
    port: int
    packets: int


@dataclass(frozen=True)
class LiveCounters:
    """Every counter of the live table."""

    rules: tuple[RuleCounter, ...]
    blocked: tuple[BlockedPort, ...]


def read_counters(kernel: NftKernel) -> LiveCounters | None:
    """The counters of the live table (None when there is no portguard table)."""
    kernel.handle.set_stateless_output(False)
    dumped = dump_rules()
    if dumped:  # None: netlink unreadable; (): no rules, perhaps no table (the listing says)
        blocked = [n for rule in dumped for n in rule.sets if _base(n) == BLOCKED_SET]
        blocked_listing = kernel.set_listing(blocked[0]) if blocked else None
        rules = tuple(
            RuleCounter(rule.chain, tuple(_base(n) for n in rule.sets), *rule.counter)
            for rule in dumped
            if rule.counter is not None
        )
        ports = () if blocked_listing is None else parse_counters(blocked_listing).blocked
        return LiveCounters(rules=rules, blocked=ports)
    listing = kernel.stateful_listing()
    return None if listing is None else parse_counters(listing)


def parse_counters(listing: str) -> LiveCounters:
    """Pure: the counters in a stateful listing of the table."""
    rules: list[RuleCounter] = []
    blocked: dict[tuple[str, int], int] = {}
    block: tuple[str, str] | None = None
    set_text: list[str] = []
    for depth, text, opened in listing_lines(listing):
        if opened is not None:
            block = opened
            set_text = []
            continue
        if depth == 1 and text == "}" and block is not None:
            if block[0] == "set" and _base(block[1]) == BLOCKED_SET:
                for proto, port, packets, _ in BLOCKED_ELEMENT.findall(" ".join(set_text)):
                    key = (proto, int(port))
                    blocked[key] = blocked.get(key, 0) + int(packets)
            block = None
            continue
        if block is None:
            continue
        if block[0] == "set":
            set_text.append(text)
        elif block[0] == "chain" and depth == 2:
            # Brace groups are anonymous sets and set-update templates (a meter's limit, the
            # blocked set's per-element `counter`): the rule's own counter is outside them.
            body = BRACES.sub("", text.partition(' comment "')[0])
            counted = COUNTER.search(body)
            if counted is None:
                continue
            names = tuple(_base(n) for n in SET_REFERENCE.findall(body))
            rules.append(RuleCounter(block[1], names, int(counted[1]), int(counted[2])))
    ports = tuple(BlockedPort(p, port, n) for (p, port), n in sorted(blocked.items()))
    return LiveCounters(rules=tuple(rules), blocked=ports)


def _base(name: str) -> str:
    """A set name without its generation suffix."""
    for suffix in GENERATIONS:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
