"""Live sessions for the lockout guard: established inbound TCP, and where each one arrives.

Admin ports are the TCP listening ports whose socket a process named sshd holds (read from
/proc/PID/comm for every process, descriptors only for those so named), whatever the port.
The kernel is asked only for ESTABLISHED connections to listening ports the policy does not
open to everyone (sock_diag with a port filter), so other traffic costs nothing. Only a
session the policy could refuse needs its arriving interface: the route to the peer, asked
of the kernel over rtnetlink (RTM_GETROUTE), as `ip route get PEER from LOCAL` would.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address

from portguard.errors import PortguardError
from portguard.facts.sockets import (
    NLMSG_ERROR,
    NLMSG_HEADER,
    RawConnection,
    query_established,
    query_sock_diag,
    socket_inodes_of,
)
from portguard.lockout import ADMIN_PROCESSES, LiveSession, could_refuse, open_to_everyone
from portguard.model import Policy, Proto

__all__ = ["SessionFactsError", "live_sessions", "route_interface", "sessions_from"]

Address = IPv4Address | IPv6Address
Router = Callable[[Address, Address], str | None]

RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_SRC = 2
RTA_OIF = 4
NLM_F_REQUEST = 0x1
ROUTE_MESSAGE = struct.Struct("=BBBBBBBBI")  # struct rtmsg
ATTRIBUTE = struct.Struct("=HH")


class SessionFactsError(PortguardError):
    """The live sessions (or who holds the admin ports) could not be read."""


def live_sessions(policy: Policy) -> tuple[LiveSession, ...]:
    """Established inbound TCP sessions to this host that `policy` could refuse to renew."""
    if sys.platform == "win32":
        from portguard.facts import windows  # noqa: PLC0415 - psutil path, Windows only

        return windows.live_sessions(policy)
    families = (socket.AF_INET, socket.AF_INET6)
    listeners = [s for f in families for s in query_sock_diag(Proto.TCP, f)]
    admin_inodes, unreadable = socket_inodes_of(ADMIN_PROCESSES)
    if unreadable:
        raise SessionFactsError(
            f"cannot read the descriptors of sshd (pid {unreadable[0]}) to find its ports"
            " (needs root with CAP_SYS_PTRACE)"
        )
    admin_ports = frozenset(s.port for s in listeners if s.inode in admin_inodes)
    exposed = {s.port for s in listeners if not s.address.is_loopback} | admin_ports
    watched = {port for port in exposed if not open_to_everyone(policy, port)}
    connections = [c for f in families for c in query_established(f, watched)]
    return sessions_from(policy, connections, admin_ports)


def sessions_from(
    policy: Policy,
    connections: Iterable[RawConnection],
    admin_ports: frozenset[int],
    router: Router | None = None,
) -> tuple[LiveSession, ...]:
    """One LiveSession per (peer, local port) that `policy` could refuse, routed when needed."""
    route_of: Router = router or route_interface
    found: dict[tuple[Address, int], LiveSession] = {}
    routes: dict[tuple[Address, Address], str | None] = {}
    for conn in connections:
        key = (conn.peer, conn.local_port)
        if key in found or conn.peer.is_loopback:
            continue
        if not could_refuse(policy, conn.peer, conn.local_port):
            continue
        if conn.ifindex and conn.peer.version == 6 and conn.peer.is_link_local:
            interface = _interface_name(conn.ifindex)
        else:
            route = (conn.peer, conn.local)
            if route not in routes:
                routes[route] = route_of(conn.peer, conn.local)
            interface = routes[route]
        found[key] = LiveSession(conn.peer, conn.local_port, interface, key[1] in admin_ports)
    return tuple(found.values())


def route_interface(
    peer: IPv4Address | IPv6Address, local: IPv4Address | IPv6Address | None = None
) -> str | None:
    """The interface the kernel routes `peer` through (from `local`), or None if unroutable."""
    if not hasattr(socket, "AF_NETLINK"):  # not Linux
        return None
    for source in (local, None) if local is not None else (None,):
        try:
            index = _route_oif(peer, source)
        except OSError:
            continue
        if index:
            return _interface_name(index)
    return None


def _route_oif(
    peer: IPv4Address | IPv6Address, source: IPv4Address | IPv6Address | None
) -> int | None:
    """Send one RTM_GETROUTE and return the RTA_OIF of the answer (OSError on a refusal)."""
    family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    bits = peer.max_prefixlen
    use_source = source is not None and source.version == peer.version
    message = ROUTE_MESSAGE.pack(family, bits, bits if use_source else 0, 0, 0, 0, 0, 0, 0)
    message += _attribute(RTA_DST, peer.packed)
    if use_source and source is not None:
        message += _attribute(RTA_SRC, source.packed)
    header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(message), RTM_GETROUTE, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as link:
        link.settimeout(2.0)
        link.sendto(header + message, (0, 0))
        data = link.recv(65536)
    length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, NLMSG_HEADER.size)
        raise OSError(-code, "route lookup refused")
    if kind != RTM_NEWROUTE:
        return None
    offset = NLMSG_HEADER.size + ROUTE_MESSAGE.size
    while offset + ATTRIBUTE.size <= min(length, len(data)):
        size, attribute = ATTRIBUTE.unpack_from(data, offset)
        if size < ATTRIBUTE.size:
            return None
        if attribute == RTA_OIF:
            (index,) = struct.unpack_from("=I", data, offset + ATTRIBUTE.size)
            return int(index)
        offset += (size + 3) & ~3
    return None


def _attribute(kind: int, payload: bytes) -> bytes:
    data = ATTRIBUTE.pack(ATTRIBUTE.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _interface_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None
