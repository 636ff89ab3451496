"""The rule counters of `table inet portguard`, read over netlink without any set element.

libnftables 1.0.6 fetches every element of every set for any listing of a table or chain
(65 s and 1.3 GB for a million), so `stats`, which only needs each rule's counter and the
sets it names, dumps the rules itself (NFT_MSG_GETRULE, filtered to the table in the
kernel) and reads three expressions: `counter` (packets, bytes), `lookup` (the set a rule
matches) and `dynset` (the set a rule updates). Anonymous sets (`{ 22, 2222 }`) are not
named in a listing and are skipped here too, so the result equals facts/counters.py's
reading of a listing (tests/test_rule_netlink.py compares the two on a live table).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from portguard.facts.generation import ATTR_HEADER
from portguard.facts.nft_netlink import attributes, dump
from portguard.render.nft_table import TABLE_NAME

__all__ = ["DumpedRule", "dump_rules"]

NFT_MSG_GETRULE = 7
NFT_MSG_NEWRULE = 6
NFPROTO_INET = 1
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_EXPRESSIONS = 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2
NFTA_LOOKUP_SET = 1
NFTA_DYNSET_SET_NAME = 1
ANONYMOUS_SET = "__set"
U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class DumpedRule:
    """One rule of the table: its chain, the named sets it uses, its counter (if any)."""

    chain: str
    sets: tuple[str, ...]
    counter: tuple[int, int] | None  # (packets, bytes)


def dump_rules() -> tuple[DumpedRule, ...] | None:
    """Every rule of `table inet portguard` in rule order (None: not readable this way)."""
    table = TABLE_NAME.encode() + b"\0"
    attr = ATTR_HEADER.pack(ATTR_HEADER.size + len(table), NFTA_RULE_TABLE)
    attr += table + b"\0" * (-len(table) % 4)
    try:
        payloads = (p for _, p in dump(NFT_MSG_GETRULE, NFT_MSG_NEWRULE, NFPROTO_INET, attr))
        return tuple(_rules(payloads))
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None


def _rules(payloads: Iterator[bytes]) -> Iterator[DumpedRule]:
    for payload in payloads:
        attrs = dict(attributes(payload))
        chain = attrs.get(NFTA_RULE_CHAIN, b"").rstrip(b"\0").decode()
        sets: list[str] = []
        counter = None
        for kind, element in attributes(attrs.get(NFTA_RULE_EXPRESSIONS, b"")):
            if kind != NFTA_LIST_ELEM:
                continue
            expression = dict(attributes(element))
            name = expression.get(NFTA_EXPR_NAME, b"").rstrip(b"\0").decode()
            data = dict(attributes(expression.get(NFTA_EXPR_DATA, b"")))
            if name == "counter":
                packets = U64.unpack(data[NFTA_COUNTER_PACKETS])[0]
                counter = (packets, U64.unpack(data[NFTA_COUNTER_BYTES])[0])
            elif name in ("lookup", "dynset"):
                key = NFTA_LOOKUP_SET if name == "lookup" else NFTA_DYNSET_SET_NAME
                set_name = data.get(key, b"").rstrip(b"\0").decode()
                if set_name and not set_name.startswith(ANONYMOUS_SET):
                    sets.append(set_name)
        yield DumpedRule(chain, tuple(sets), counter)
