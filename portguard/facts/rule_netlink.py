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

import contextlib
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from portguard.facts.generation import (
    ATTR_HEADER,
    NETLINK_NETFILTER,
    NFGEN_HEADER,
    NFNL_SUBSYS_NFTABLES,
    NLA_TYPE_MASK,
    NLMSG_ERROR,
    NLMSG_HEADER,
)
from portguard.render.nft_table import TABLE_NAME

__all__ = ["DumpedRule", "dump_rules"]

NFT_MSG_GETRULE = 7
NFT_MSG_NEWRULE = 6
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
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
RECV_BYTES = 1 << 20
TIMEOUT_SECONDS = 10.0
U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class DumpedRule:
    """One rule of the table: its chain, the named sets it uses, its counter (if any)."""

    chain: str
    sets: tuple[str, ...]
    counter: tuple[int, int] | None  # (packets, bytes)


def dump_rules() -> tuple[DumpedRule, ...] | None:
    """Every rule of `table inet portguard` in rule order (None: not readable this way)."""
    try:
        return tuple(_rules(_dump()))
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None


def _dump() -> Iterator[bytes]:
    """The payloads of the kernel's NEWRULE answers to one filtered GETRULE dump."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)  # type: ignore[attr-defined,unused-ignore]
    with contextlib.closing(sock):
        sock.settimeout(TIMEOUT_SECONDS)
        sock.bind((0, 0))
        table = TABLE_NAME.encode() + b"\0"
        attr = ATTR_HEADER.pack(ATTR_HEADER.size + len(table), NFTA_RULE_TABLE) + _padded(table)
        body = NFGEN_HEADER.pack(NFPROTO_INET, 0, 0) + attr
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE
        flags = NLM_F_REQUEST | NLM_F_DUMP
        sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, flags, 1, 0) + body)
        while True:
            data = sock.recv(RECV_BYTES)
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, answer = NLMSG_HEADER.unpack_from(data, offset)[:2]
                if length < NLMSG_HEADER.size:
                    raise ValueError("short netlink message")
                if answer == NLMSG_DONE:
                    return
                if answer == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
                    if code == 0:
                        return
                    raise OSError(-code, "nf_tables refused the rule dump")
                if answer == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE:
                    start = offset + NLMSG_HEADER.size + NFGEN_HEADER.size
                    yield data[start : offset + length]
                offset += (length + 3) & ~3


def _rules(payloads: Iterator[bytes]) -> Iterator[DumpedRule]:
    for payload in payloads:
        attrs = dict(_attributes(payload))
        chain = attrs.get(NFTA_RULE_CHAIN, b"").rstrip(b"\0").decode()
        sets: list[str] = []
        counter = None
        for kind, element in _attributes(attrs.get(NFTA_RULE_EXPRESSIONS, b"")):
            if kind != NFTA_LIST_ELEM:
                continue
            expression = dict(_attributes(element))
            name = expression.get(NFTA_EXPR_NAME, b"").rstrip(b"\0").decode()
            data = dict(_attributes(expression.get(NFTA_EXPR_DATA, b"")))
            if name == "counter":
                packets = U64.unpack(data[NFTA_COUNTER_PACKETS])[0]
                counter = (packets, U64.unpack(data[NFTA_COUNTER_BYTES])[0])
            elif name in ("lookup", "dynset"):
                key = NFTA_LOOKUP_SET if name == "lookup" else NFTA_DYNSET_SET_NAME
                set_name = data.get(key, b"").rstrip(b"\0").decode()
                if set_name and not set_name.startswith(ANONYMOUS_SET):
                    sets.append(set_name)
        yield DumpedRule(chain, tuple(sets), counter)


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in `data`."""
    offset = 0
    while offset + ATTR_HEADER.size <= len(data):
        size, kind = ATTR_HEADER.unpack_from(data, offset)
        if size < ATTR_HEADER.size:
            raise ValueError("short netlink attribute")
        yield kind & NLA_TYPE_MASK, data[offset + ATTR_HEADER.size : offset + size]
        offset += (size + 3) & ~3


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)
