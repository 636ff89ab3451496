"""Listening sockets through psutil: the Windows facts path (psutil works on Linux too).

On Windows, PID 4 ("System") owns the sockets of kernel-mode listeners such as HTTP.sys
(IIS, WinRM, WSD ...): the process name says so, because the real owner is a driver.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from ipaddress import ip_address
from typing import Any

from portguard.model import ListeningSocket, Proto

__all__ = ["SYSTEM_PID", "SYSTEM_PROCESS", "listening_sockets", "sockets_from_connections"]

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
