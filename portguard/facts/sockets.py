"""Linux listening sockets: netlink sock_diag for the sockets, /proc for their owners.

The kernel is asked only for TCP sockets in LISTEN and UDP sockets in CLOSE (bound but
unconnected), so a host with 60k established connections costs no more than an idle one.
Owners come from one pass over /proc/*/fd that stops as soon as every wanted inode is found.
Established connections (for the lockout guard) are asked for by state and local port: the
kernel runs a port-range filter (inet_diag bytecode) and sends back only the matches.
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
from portguard.facts.nft_netlink import receive_dump
from portguard.model import ListeningSocket, Proto

__all__ = [
    "RawConnection",
    "RawSocket",
    "SocketFactsError",
    "linux_listening_sockets",
    "owners_of",
    "parse_connections",
    "parse_diag_messages",
    "port_filter_bytecode",
    "query_established",
    "query_sock_diag",
    "socket_inodes_of",
]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
TCP_ESTABLISHED = 1
TCP_LISTEN = 10
TCP_CLOSE = 7  # an unconnected UDP socket
NLMSG_ERROR = 2
NLMSG_HEADER = struct.Struct("=IHHII")
DIAG_REQUEST = struct.Struct("=BBBBI48s")
# inet_diag_msg: family, state, timer, retrans, sport, dport (big endian), src, dst, if,
# cookie, expires, rqueue, wqueue, uid, inode.
DIAG_MESSAGE = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
ATTRIBUTE_HEADER = struct.Struct("=HH")
# Byte ranges of inet_diag_msg: the local port, then source, destination and interface.
SESSION_KEY_SPORT = slice(4, 6)
SESSION_KEY_REST = slice(8, 44)
INET_DIAG_REQ_BYTECODE = 1
# inet_diag_bc_op: code, yes (jump when true), no (jump when false); a port comparison is
# followed by a second op whose `no` field holds the port (host byte order).
BC_OP = struct.Struct("=BBH")
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3
RANGE_CODE = 20  # bytes of bytecode per port range
MAX_FILTER_RANGES = 512  # beyond this, the kernel filters by state only and Python by port
INET_DIAG_SKV6ONLY = 11  # sent for IPv6 sockets in LISTEN or CLOSE
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
    bodies = _dump(family, PROTO_NUMBERS[proto], STATE_FILTER[proto], b"")
    return list(parse_diag_messages(proto, bodies))


@dataclass(frozen=True)
class RawConnection:
    """One established TCP connection: local end, remote end, bound interface index."""

    local: IPv4Address | IPv6Address
    local_port: int
    peer: IPv4Address | IPv6Address
    peer_port: int
    ifindex: int  # set for IPv6 link-local peers (the interface it arrived on), else 0


def query_established(family: int, local_ports: Iterable[int]) -> list[RawConnection]:
    """Established TCP connections of one family whose local port is in `local_ports`.

    The kernel filters by state and, through inet_diag bytecode, by port ranges, so only
    the matching connections cross into Python, however many others the host holds. One
    connection per (local address, local port, peer address, interface) is kept: those
    that differ only in the peer's port are the same session for the guard, and are
    dropped on the raw bytes, before any object is made.
    """
    ports = sorted(set(local_ports))
    if not ports:
        return []
    ranges = _port_ranges(ports)
    bytecode = port_filter_bytecode(ranges) if len(ranges) <= MAX_FILTER_RANGES else b""
    seen: set[bytes] = set()
    distinct: list[bytes] = []
    for body in _dump(family, socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED, bytecode):
        key = body[SESSION_KEY_SPORT] + body[SESSION_KEY_REST]  # all but the peer's port
        if key not in seen:
            seen.add(key)
            distinct.append(body)
    wanted = frozenset(ports)
    return [c for c in parse_connections(distinct) if c.local_port in wanted]


def port_filter_bytecode(ranges: Iterable[tuple[int, int]]) -> bytes:
    """inet_diag bytecode accepting a socket whose local port lies in one of `ranges`.

    Each range is `S_GE lo`, `S_LE hi`, `JMP end` (20 bytes). A miss jumps to the next
    range, or 4 bytes past the end (reject) after the last; reaching the end accepts. Every
    `yes` steps to the next op, as the kernel's audit requires of jump targets.
    """
    spans = list(ranges)
    total = RANGE_CODE * len(spans)
    code = bytearray()
    for index, (low, high) in enumerate(spans):
        offset = RANGE_CODE * index
        miss = RANGE_CODE if index < len(spans) - 1 else total - offset + 4
        code += BC_OP.pack(INET_DIAG_BC_S_GE, 8, miss) + BC_OP.pack(0, 0, low)
        code += BC_OP.pack(INET_DIAG_BC_S_LE, 8, miss - 8) + BC_OP.pack(0, 0, high)
        code += BC_OP.pack(INET_DIAG_BC_JMP, 4, total - offset - 16)
    return bytes(code)


def _port_ranges(ports: list[int]) -> list[tuple[int, int]]:
    """Sorted ports merged into inclusive (low, high) runs."""
    ranges: list[tuple[int, int]] = []
    for port in ports:
        if ranges and ranges[-1][1] + 1 == port:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


def parse_connections(bodies: Iterable[bytes]) -> Iterator[RawConnection]:
    """Turn inet_diag_msg bodies of connected sockets into RawConnections."""
    for body in bodies:
        family, _state, _t, _r, sport, dport, src, dst, ifindex, *_rest = DIAG_MESSAGE.unpack_from(
            body
        )
        yield RawConnection(
            _address(family, src),
            int.from_bytes(sport, "big"),
            _address(family, dst),
            int.from_bytes(dport, "big"),
            ifindex,
        )


def _dump(family: int, protocol: int, states: int, bytecode: bytes) -> list[bytes]:
    """One sock_diag dump: every message body, optionally filtered by `bytecode`."""
    request = DIAG_REQUEST.pack(family, protocol, 0, 0, states, b"")
    if bytecode:
        attribute = ATTRIBUTE_HEADER.pack(
            ATTRIBUTE_HEADER.size + len(bytecode), INET_DIAG_REQ_BYTECODE
        )
        request += attribute + bytecode  # bytecode is 4-aligned
    header = NLMSG_HEADER.pack(
        NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
            link.sendto(header + request, (0, 0))
            return [body for _kind, body in receive_dump(link)]
    except OSError as exc:
        raise SocketFactsError(f"cannot read the socket table (sock_diag): {exc}") from None


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


def socket_inodes_of(names: frozenset[str]) -> tuple[set[int], list[int]]:
    """Socket inodes held by processes whose name (comm) is in `names`, and unreadable pids.

    Only /proc/PID/comm is read for every process; descriptors only for those named. A pid
    named so whose descriptors cannot be read (no CAP_SYS_PTRACE) is listed as unreadable.
    """
    inodes: set[int] = set()
    unreadable: list[int] = []
    for name in os.listdir(PROC):
        if not name.isdigit() or _process_name(int(name)) not in names:
            continue
        directory = f"{PROC}/{name}/fd/"
        try:
            fds = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError:
            unreadable.append(int(name))
            continue
        for fd in fds:
            try:
                target = os.readlink(directory + fd)
            except PermissionError:  # listed but not readable: not ours to trace
                unreadable.append(int(name))
                break
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes, unreadable


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
