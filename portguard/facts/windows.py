"""Listening sockets and live sessions through psutil: the Windows facts path.

psutil works on Linux too. The admin sessions on Windows are RDP: established connections
to a port that the TermService service's process listens on (3389 unless changed).

On Windows, PID 4 ("System") owns the sockets of kernel-mode listeners such as HTTP.sys
(IIS, WinRM, WSD ...): the process name says so, because the real owner is a driver.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from portguard.facts.sessions import sessions_from
from portguard.facts.sockets import RawConnection
from portguard.lockout import LiveSession, open_to_everyone
from portguard.model import ListeningSocket, Policy, Proto

__all__ = [
    "RDP_DEFAULT_PORT",
    "RDP_SERVICE",
    "SYSTEM_PID",
    "SYSTEM_PROCESS",
    "listening_sockets",
    "live_sessions",
    "sessions_from_connections",
    "sockets_from_connections",
]

RDP_SERVICE = "TermService"
RDP_DEFAULT_PORT = 3389

SYSTEM_PID = 4
SYSTEM_PROCESS = "System (HTTP.sys or another kernel-mode listener)"


def sockets_from_connections(
    connections: Iterable[Any], process_name: Callable[[int], str | None]
) -> tuple[ListeningSocket, ...]:
    """TCP listeners and unconnected UDP sockets among psutil `connections`, sorted, unique."""
    found: set[ListeningSocket] = set()
    for conn in connections:
        if conn.type == socket.SOCK_STREAM and conn.status == "LISTEN":  # psutil.CONN_LISTEN
            proto = Proto.TCP
        elif conn.type == socket.SOCK_DGRAM and not conn.raddr:
            proto = Proto.UDP
        else:
            continue
        host = str(conn.laddr.ip).split("%", 1)[0]  # drop an IPv6 zone ("fe80::1%eth0")
        pid = conn.pid if conn.pid else None
        name = SYSTEM_PROCESS if pid == SYSTEM_PID else (process_name(pid) if pid else None)
        found.add(ListeningSocket(proto, ip_address(host), int(conn.laddr.port), pid, name))
    return tuple(sorted(found, key=lambda s: (s.proto.value, s.port, str(s.address), s.pid or 0)))


def _process_name(pid: int) -> str | None:
    import psutil  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    try:
        name: str = psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return None
    return name


def listening_sockets() -> tuple[ListeningSocket, ...]:
    """Every TCP listener and unconnected UDP socket on this host, with its owner if visible."""
    import psutil  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    return sockets_from_connections(psutil.net_connections(kind="inet"), _process_name)


def sessions_from_connections(
    policy: Policy, connections: Iterable[Any], admin_pids: frozenset[int]
) -> tuple[LiveSession, ...]:
    """Live sessions among psutil `connections`: established TCP to a listening port.

    A port that a process in `admin_pids` (TermService) listens on is an admin port; with no
    such process known, 3389 is (RDP's default), so an unreadable service fails safe. The
    arriving interface is not looked up on Windows (None: as an interface no entry names).
    """
    conns = list(connections)
    listening = {
        int(c.laddr.port): c.pid
        for c in conns
        if c.type == socket.SOCK_STREAM and c.status == "LISTEN"  # psutil.CONN_LISTEN
    }
    admin_ports = frozenset(port for port, pid in listening.items() if pid in admin_pids)
    if not admin_pids and RDP_DEFAULT_PORT in listening:
        admin_ports = frozenset({RDP_DEFAULT_PORT})  # TermService unreadable: assume its port
    established = [
        RawConnection(_host(c.laddr.ip), int(c.laddr.port), _host(c.raddr.ip), int(c.raddr.port), 0)
        for c in conns
        if c.type == socket.SOCK_STREAM
        and c.status == "ESTABLISHED"  # psutil.CONN_ESTABLISHED
        and c.raddr
        and int(c.laddr.port) in listening
        and not open_to_everyone(policy, int(c.laddr.port))
    ]
    return sessions_from(policy, established, admin_ports, router=lambda _peer, _local: None)


def _host(text: str) -> IPv4Address | IPv6Address:
    address = ip_address(str(text).split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def live_sessions(policy: Policy) -> tuple[LiveSession, ...]:
    """Established inbound TCP sessions here; RDP (TermService) sessions are admin sessions."""
    import psutil  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    admin_pids: frozenset[int] = frozenset()
    if hasattr(psutil, "win_service_get"):
        try:
            pid = psutil.win_service_get(RDP_SERVICE).pid()
        except (psutil.Error, OSError):
            pid = None
        admin_pids = frozenset({pid}) if pid else frozenset()
    return sessions_from_connections(policy, psutil.net_connections(kind="tcp"), admin_pids)
