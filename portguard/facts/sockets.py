"""Linux listening sockets: netlink sock_diag for the sockets, /proc for their owners.

The kernel is asked only for TCP sockets in LISTEN and UDP sockets in CLOSE (bound but
unconnected), so a host with 60k established connections costs no more than an idle one.
Owners come from one pass over /proc/*/fd that stops as soon as every wanted inode is found.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from portguard.errors import PortguardError
from portguard.model import ListeningSocket, Proto

__all__ = [
    "RawSocket",
    "SocketFactsError",
    "linux_listening_sockets",
    "owners_of",
    "parse_diag_messages",
    "query_sock_diag",
]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10
TCP_CLOSE = 7  # an unconnected UDP socket
NLMSG_HEADER = struct.Struct("=IHHII")
DIAG_REQUEST = struct.Struct("=BBBBI48s")
# inet_diag_msg: family, state, timer, retrans, sport, dport (big endian), src, dst, if,
# cookie, expires, rqueue, wqueue, uid, inode.
DIAG_MESSAGE = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
ATTRIBUTE_HEADER = struct.Struct("=HH")
INET_DIAG_SKV6ONLY = 11  # sent for IPv6 sockets in LISTEN or CLOSE
RECV_BUFFER = 1 << 20
PROTO_NUMBERS = MappingProxyType({Proto.TCP: socket.IPPROTO_TCP, Proto.UDP: socket.IPPROTO_UDP})
STATE_FILTER = MappingProxyType({Proto.TCP: 1 << TCP_LISTEN, Proto.UDP: 1 << TCP_CLOSE})
PROC = "/proc"


class SocketFactsError(PortguardError):
    """The kernel's socket table could not be read."""


@dataclass(frozen=True)
class RawSocket:
    """One sock_diag answer: a bound socket, before its owner is known."""

    proto: Proto
    address: IPv4Address | IPv6Address
    port: int
    inode: int
    v6only: bool = False


def linux_listening_sockets() -> tuple[ListeningSocket, ...]:
    """TCP listeners and bound UDP sockets (IPv4 and IPv6) in this network namespace."""
    raw = [
        found
        for proto in Proto
        for family in (socket.AF_INET, socket.AF_INET6)
        for found in query_sock_diag(proto, family)
    ]
    owners = owners_of({s.inode for s in raw if s.inode})
    facts = {
        ListeningSocket(
            proto=s.proto,
            address=s.address,
            port=s.port,
            pid=owners[s.inode][0] if s.inode in owners else None,
            process=owners[s.inode][1] if s.inode in owners else None,
            v6only=s.v6only,
        )
        for s in raw
    }
    return tuple(sorted(facts, key=_sort_key))


def _sort_key(fact: ListeningSocket) -> tuple[str, int, int, str, int]:
    return (fact.proto.value, fact.port, fact.address.version, str(fact.address), fact.pid or 0)


def query_sock_diag(proto: Proto, family: int) -> list[RawSocket]:
    """Dump the listening (TCP) or unconnected (UDP) sockets of one protocol and family."""
    request = DIAG_REQUEST.pack(family, PROTO_NUMBERS[proto], 0, 0, STATE_FILTER[proto], b"")
    header = NLMSG_HEADER.pack(
        NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
            link.sendto(header + request, (0, 0))
            return list(parse_diag_messages(proto, _receive_dump(link)))
    except OSError as exc:
        raise SocketFactsError(f"cannot read the socket table (sock_diag): {exc}") from None


def _receive_dump(link: socket.socket) -> Iterator[bytes]:
    """Every netlink message body of one dump, until NLMSG_DONE."""
    while True:
        data = link.recv(RECV_BUFFER)
        offset = 0
        while offset + NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
                if code == 0:
                    return
                raise OSError(-code, os.strerror(-code))
            yield data[offset + NLMSG_HEADER.size : offset + length]
            offset += (length + 3) & ~3
        if not data:
            return


def parse_diag_messages(proto: Proto, bodies: Iterable[bytes]) -> Iterator[RawSocket]:
    """Turn inet_diag_msg bodies into RawSockets; sockets with no port are skipped."""
    for body in bodies:
        family, _state, _t, _r, sport, _dport, src, _dst, _if, _c, _e, _rq, _wq, _uid, inode = (
            DIAG_MESSAGE.unpack_from(body)
        )
        port = int.from_bytes(sport, "big")
        if port == 0:
            continue
        v6only = family == socket.AF_INET6 and _attribute(body, INET_DIAG_SKV6ONLY) == b"\x01"
        yield RawSocket(proto, _address(family, src), port, inode, v6only)


def _attribute(body: bytes, wanted: int) -> bytes | None:
    """The payload of the first netlink attribute of type `wanted` after the message."""
    offset = DIAG_MESSAGE.size
    while offset + ATTRIBUTE_HEADER.size <= len(body):
        length, kind = ATTRIBUTE_HEADER.unpack_from(body, offset)
        if length < ATTRIBUTE_HEADER.size:
            return None
        if kind == wanted:
            return body[offset + ATTRIBUTE_HEADER.size : offset + length]
        offset += (length + 3) & ~3
    return None


def _address(family: int, raw: bytes) -> IPv4Address | IPv6Address:
    if family == socket.AF_INET:
        return IPv4Address(raw[:4])
    address = IPv6Address(raw)
    return address.ipv4_mapped or address  # ::ffff:a.b.c.d takes only IPv4 traffic


def owners_of(inodes: set[int]) -> dict[int, tuple[int, str | None]]:
    """Map socket inodes to (pid, process name), scanning /proc/*/fd once, stopping early.

    Processes in this network namespace are scanned first; others only if some inode is
    still unexplained (a socket can be passed to, or kept by, a process that moved).
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    found: dict[int, tuple[int, str | None]] = {}
    if not wanted:
        return found
    own_netns = _netns_of("self")
    pids = [int(name) for name in os.listdir(PROC) if name.isdigit()]
    same = [pid for pid in pids if _netns_of(str(pid)) == own_netns]
    same_set = set(same)
    for batch in (same, [pid for pid in pids if pid not in same_set]):
        for pid in batch:
            hits = _inodes_held(pid, wanted)
            if hits:
                name = _process_name(pid)
                for inode in hits:
                    found.setdefault(inode, (pid, name))
                    wanted.pop(f"socket:[{inode}]", None)
                if not wanted:
                    return found
    return found


def _netns_of(pid: str) -> str | None:
    try:
        return os.readlink(f"{PROC}/{pid}/ns/net")
    except OSError:
        return None


def _inodes_held(pid: int, wanted: dict[str, int]) -> list[int]:
    directory = f"{PROC}/{pid}/fd/"
    try:
        fds = os.listdir(directory)
    except OSError:  # gone, or not ours to read
        return []
    hits: list[int] = []
    readlink = os.readlink
    for fd in fds:
        try:
            target = readlink(directory + fd)
        except OSError:
            continue
        inode = wanted.get(target)
        if inode is not None:
            hits.append(inode)
    return hits


def _process_name(pid: int) -> str | None:
    try:
        with open(f"{PROC}/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().rstrip("\n") or None
    except OSError:
        return None
