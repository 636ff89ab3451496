"""Ban elements added and deleted over netlink, in one nf_tables batch, without libnftables.

libnftables 1.0.6 fetches the elements of every set in the table before it adds or deletes
one element (0.5 s with a 100k-source policy, 72 s with a million), so a ban, which touches
only `ban4` or `ban6`, sends its elements itself: the same messages nft sends (an interval
is a start element, with the timeout and the comment, and an end element one past it, with
NFT_SET_ELEM_INTERVAL_END; the first element of an empty set comes with nft's end element
at address zero). Networks nft writes differently (one that starts at address zero or
reaches the top address, a comment nft would refuse) are left to libnftables (`suits`).
tests/test_bans.py checks the listings of both ways are the same, and bans with packets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass

from portguard.backends.nftables import KernelRefused
from portguard.facts.generation import (
    ATTR_HEADER,
    NETLINK_NETFILTER,
    NFGEN_HEADER,
    NFNL_SUBSYS_NFTABLES,
    NLMSG_ERROR,
    NLMSG_HEADER,
)
from portguard.facts.nft_netlink import NLM_F_REQUEST
from portguard.model import Network
from portguard.render.nft_table import TABLE_NAME

__all__ = ["ElementChange", "send_element_changes", "suits"]

NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
NFPROTO_INET = 1
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_FLAGS = 3
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_USERDATA = 6
NFTA_DATA_VALUE = 1
NFT_SET_ELEM_INTERVAL_END = 1
UDATA_SET_ELEM_COMMENT = 0
MAX_COMMENT_BYTES = 128
RECV_BYTES = 1 << 16
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ElementChange:
    """One add or delete of a ban interval in set `set_name`."""

    add: bool
    set_name: str
    network: Network
    timeout_ms: int | None = None
    comment: str | None = None
    zero_end: bool = False  # also nft's end element at address zero (the set was empty)


def suits(network: Network, comment: str | None) -> bool:
    """Whether `network` (and its comment) is written here exactly as nft would write it."""
    top = (1 << network.max_prefixlen) - 1
    if int(network.network_address) == 0 or int(network.broadcast_address) == top:
        return False
    return comment is None or len(comment.encode()) < MAX_COMMENT_BYTES


def send_element_changes(changes: tuple[ElementChange, ...]) -> None:
    """Send `changes` as one transaction (all or nothing); KernelRefused if refused."""
    messages = [_batch_marker(NFNL_MSG_BATCH_BEGIN, 0)]
    messages += [_message(change, seq) for seq, change in enumerate(changes, start=1)]
    messages.append(_batch_marker(NFNL_MSG_BATCH_END, len(changes) + 1))
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)  # type: ignore[attr-defined,unused-ignore]
    with contextlib.closing(sock):
        sock.settimeout(TIMEOUT_SECONDS)
        sock.bind((0, 0))
        sock.send(b"".join(messages))
        _acknowledged(sock, len(changes))


def _acknowledged(sock: socket.socket, count: int) -> None:
    """Read one acknowledgement per message; the first error refuses the whole batch."""
    pending = set(range(1, count + 1))
    while pending:
        data = sock.recv(RECV_BYTES)
        offset = 0
        while offset + NLMSG_HEADER.size <= len(data):
            length, kind, _flags, seq, _port = NLMSG_HEADER.unpack_from(data, offset)
            if length < NLMSG_HEADER.size:
                raise KernelRefused("short netlink answer", None, None)
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
                if code != 0:
                    raise KernelRefused(os.strerror(-code), None, None)
                pending.discard(seq)
            offset += (length + 3) & ~3


def _batch_marker(kind: int, seq: int) -> bytes:
    body = NFGEN_HEADER.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def _message(change: ElementChange, seq: int) -> bytes:
    """One NEWSETELEM or DELSETELEM message of the interval of `change`."""
    width = change.network.max_prefixlen // 8
    first = int(change.network.network_address)
    after = int(change.network.broadcast_address) + 1
    start = _key(first, width)
    if change.add and change.timeout_ms is not None:
        start = _attr(NFTA_SET_ELEM_TIMEOUT, struct.pack(">Q", change.timeout_ms)) + start
    if change.add and change.comment is not None:
        text = change.comment.encode() + b"\0"
        start += _attr(NFTA_SET_ELEM_USERDATA, bytes((UDATA_SET_ELEM_COMMENT, len(text))) + text)
    elements = [start, _end_element(after, width)]
    if change.zero_end:
        elements.insert(0, _end_element(0, width))
    listed = b"".join(_attr(NFTA_LIST_ELEM, e, True) for e in elements)
    body = (
        NFGEN_HEADER.pack(NFPROTO_INET, 0, 0)
        + _attr(NFTA_SET_ELEM_LIST_TABLE, TABLE_NAME.encode() + b"\0")
        + _attr(NFTA_SET_ELEM_LIST_SET, change.set_name.encode() + b"\0")
        + _attr(NFTA_SET_ELEM_LIST_ELEMENTS, listed, True)
    )
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if change.add else NFT_MSG_DELSETELEM)
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if change.add else 0)
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, flags, seq, 0) + body


def _end_element(key: int, width: int) -> bytes:
    flags = _attr(NFTA_SET_ELEM_FLAGS, struct.pack(">I", NFT_SET_ELEM_INTERVAL_END))
    return flags + _key(key, width)


def _key(key: int, width: int) -> bytes:
    return _attr(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key.to_bytes(width, "big")), True)


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """A netlink attribute, padded to four bytes."""
    flagged = kind | (NLA_F_NESTED if nested else 0)
    header = ATTR_HEADER.pack(ATTR_HEADER.size + len(payload), flagged)
    return header + payload + b"\0" * (-len(payload) % 4)
