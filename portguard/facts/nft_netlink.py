"""Read-only nf_tables dumps over netlink: the objects libnftables cannot list cheaply.

libnftables 1.0.6 fetches every element of every set for `list ruleset`, `list tables`,
`list table` of a table holding the sets, and `list chain`: with a policy of a million
sources that is a minute and more than a gigabyte. The table names and the rules' counters
(facts/rule_netlink.py) are dumped here instead, without any element.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator

from portguard.facts.generation import (
    ATTR_HEADER,
    NETLINK_NETFILTER,
    NFGEN_HEADER,
    NFNL_SUBSYS_NFTABLES,
    NLA_TYPE_MASK,
    NLMSG_ERROR,
    NLMSG_HEADER,
)

__all__ = ["NLM_F_REQUEST", "attributes", "dump", "receive_dump", "table_names"]

NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME = 1
FAMILY_NAMES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
RECV_BYTES = 1 << 20
TIMEOUT_SECONDS = 10.0


def dump(request: int, answer: int, family: int, attrs: bytes = b"") -> Iterator[tuple[int, bytes]]:
    """(family, attributes) of each `answer` message of one dump `request` (OSError on error)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)  # type: ignore[attr-defined,unused-ignore]
    with contextlib.closing(sock):
        sock.settimeout(TIMEOUT_SECONDS)
        sock.bind((0, 0))
        body = NFGEN_HEADER.pack(family, 0, 0) + attrs
        kind = (NFNL_SUBSYS_NFTABLES << 8) | request
        flags = NLM_F_REQUEST | NLM_F_DUMP
        sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, flags, 1, 0) + body)
        for message_kind, message in receive_dump(sock):
            if message_kind == (NFNL_SUBSYS_NFTABLES << 8) | answer:
                yield NFGEN_HEADER.unpack_from(message)[0], message[NFGEN_HEADER.size :]


def receive_dump(link: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(type, body) of every netlink message of one dump, until NLMSG_DONE (OSError on an
    error answer); shared by the nf_tables dumps and sock_diag (facts/sockets.py)."""
    while True:
        data = link.recv(RECV_BYTES)
        if not data:
            return
        offset = 0
        while offset + NLMSG_HEADER.size <= len(data):
            length, kind = NLMSG_HEADER.unpack_from(data, offset)[:2]
            if length < NLMSG_HEADER.size:
                raise OSError(errno.EPROTO, "short netlink message")
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
                if code == 0:
                    return
                raise OSError(-code, os.strerror(-code))
            yield kind, data[offset + NLMSG_HEADER.size : offset + length]
            offset += (length + 3) & ~3


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in `data`."""
    offset = 0
    while offset + ATTR_HEADER.size <= len(data):
        size, kind = ATTR_HEADER.unpack_from(data, offset)
        if size < ATTR_HEADER.size:
            raise ValueError("short netlink attribute")
        yield kind & NLA_TYPE_MASK, data[offset + ATTR_HEADER.size : offset + size]
        offset += (size + 3) & ~3


def table_names() -> tuple[tuple[str, str], ...] | None:
    """(family, name) of every table in this namespace (None: not readable over netlink)."""
    try:
        tables = []
        for family, payload in dump(NFT_MSG_GETTABLE, NFT_MSG_NEWTABLE, socket.AF_UNSPEC):
            name = dict(attributes(payload)).get(NFTA_TABLE_NAME, b"").rstrip(b"\0").decode()
            tables.append((FAMILY_NAMES.get(family, str(family)), name))
        return tuple(tables)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None
