"""Pure: would a policy cut off a live admin session, the one applying it, or other services?

A live session is an established inbound TCP connection (peer, local port) with the
interface the kernel routes the peer through. A session to a port where sshd listens is an
admin session: a policy that would refuse a NEW connection from that peer to that port is
refused. Sessions to other services that it would cut are only reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from portguard.errors import PortguardError
from portguard.model import ListeningSocket, Policy
from portguard.plan import GENERIC_INTERFACE, SocketVerdict, judge_socket, reach_index
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, verdict

__all__ = [
    "ADMIN_PROCESSES",
    "LiveSession",
    "LockoutRefused",
    "SessionsCut",
    "SshConnection",
    "could_refuse",
    "lockout_reason",
    "open_to_everyone",
    "parse_ssh_connection",
    "refusal_reason",
    "services_cut_off",
    "session_warnings",
    "sessions_cut",
]

# Process names (comm) of the SSH and RDP daemons whose listening ports carry admin sessions
# (Windows: the TermService service, see facts/windows.py).
ADMIN_PROCESSES = frozenset({"sshd", "xrdp"})
MAX_SESSION_WARNINGS = 5


class LockoutRefused(PortguardError):
    """Applying would refuse new SSH connections from the admin's own address."""


@dataclass(frozen=True)
class SshConnection:
    """The SSH_CONNECTION triple: who is connected, to which local address and port."""

    client: IPv4Address | IPv6Address
    client_port: int
    server: IPv4Address | IPv6Address
    server_port: int


def parse_ssh_connection(value: str | None) -> SshConnection | None:
    """Parse "client_ip client_port server_ip server_port"; None when unset or malformed."""
    if not value:
        return None
    fields = value.split()
    if len(fields) != 4:
        return None
    try:
        client, server = ip_address(fields[0]), ip_address(fields[2])
        client_port, server_port = int(fields[1]), int(fields[3])
    except ValueError:
        return None
    if not (0 < server_port <= 65535):
        return None
    if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    return SshConnection(client, client_port, server, server_port)


@dataclass(frozen=True)
class LiveSession:
    """An established inbound TCP connection: who, to which local port, arriving where."""

    peer: IPv4Address | IPv6Address
    port: int  # the local port (where the service listens)
    interface: str | None  # where the peer's packets arrive (route lookup); None: unknown
    admin: bool  # sshd listens on `port` (Windows: TermService)


@dataclass(frozen=True)
class SessionsCut:
    """The live sessions a policy would refuse to let reconnect, split by kind."""

    admin: tuple[LiveSession, ...]
    other: tuple[LiveSession, ...]


def open_to_everyone(policy: Policy, port: int) -> bool:
    """Whether some entry accepts TCP to `port` from anywhere, on any interface."""
    return any(
        rule.sources is None
        and rule.interface is None
        and "tcp" in {p.value for p in rule.protos}
        and any(port in r for r in rule.ports)
        for rule in policy.allow
    )


def could_refuse(policy: Policy, peer: IPv4Address | IPv6Address, port: int) -> bool:
    """Whether a NEW connection from `peer` to `port` is refused on some non-loopback interface.

    Entries tied to an interface are left out, so False means accepted whatever the interface:
    only a True needs the arriving interface (a route lookup) to decide.
    """
    anywhere = replace(policy, allow=tuple(r for r in policy.allow if r.interface is None))
    return _refused(anywhere, peer, port, GENERIC_INTERFACE)


def sessions_cut(policy: Policy, sessions: Iterable[LiveSession]) -> SessionsCut:
    """The sessions from which `policy` would refuse a NEW connection to the same port."""
    cut = [
        s
        for s in sessions
        if not s.peer.is_loopback
        and _refused(policy, s.peer, s.port, s.interface or GENERIC_INTERFACE)
    ]
    return SessionsCut(
        admin=tuple(s for s in cut if s.admin), other=tuple(s for s in cut if not s.admin)
    )


def refusal_reason(policy: Policy, ssh_reason: str | None, cut: SessionsCut) -> str | None:
    """One line: why applying `policy` is refused (SSH_CONNECTION first), or None."""
    if ssh_reason is not None:
        return ssh_reason
    if not cut.admin:
        return None
    first = cut.admin[0]
    more = len(cut.admin) - 1
    others = f" (and {more} more admin session{'s' if more != 1 else ''})" if more else ""
    return (
        f"{policy.path} would refuse new connections from {first.peer} to port {first.port},"
        f" where a live admin (SSH or RDP) session from that address arrives on"
        f" {first.interface or 'an unknown interface'}{others}"
    )


def session_warnings(cut: SessionsCut, *, cut_now: bool = False) -> tuple[str, ...]:
    """Warning texts for non-admin sessions that could not reconnect (at most a few, counted).

    `cut_now`: the firewall re-checks established connections when rules change (Windows'
    ALE reauthorization), so these sessions end at apply instead of lasting.
    """
    fate = (
        "a live session now; Windows re-checks existing connections, so it would be cut"
        if cut_now
        else "a live session now; it lasts, a reconnect would not"
    )
    lines = [
        f"new connections from {s.peer} to port {s.port} would be refused ({fate})"
        for s in cut.other[:MAX_SESSION_WARNINGS]
    ]
    if len(cut.other) > MAX_SESSION_WARNINGS:
        lines.append(f"... and {len(cut.other) - MAX_SESSION_WARNINGS} more such sessions")
    return tuple(lines)


def _refused(policy: Policy, peer: IPv4Address | IPv6Address, port: int, interface: str) -> bool:
    packet = Packet(PacketProto.TCP, peer, interface, dport=port, state=ConnState.NEW)
    return verdict(policy, packet) is not Verdict.ACCEPT


def lockout_reason(
    policy: Policy, ssh: SshConnection | None, interface: str | None = None
) -> str | None:
    """Why a new connection like the current SSH one would be refused, or None if it would not.

    `interface` is where the session arrives; when unknown, an interface that no
    `interface:` entry names is assumed, so an entry tied to one interface does not count.
    """
    if ssh is None or ssh.client.is_loopback:
        return None
    packet = Packet(
        PacketProto.TCP,
        ssh.client,
        interface or GENERIC_INTERFACE,
        dport=ssh.server_port,
        state=ConnState.NEW,
    )
    if verdict(policy, packet) is Verdict.ACCEPT:
        return None
    return (
        f"{policy.path} would refuse new SSH connections from {ssh.client} to port"
        f" {ssh.server_port} (your session, per SSH_CONNECTION)"
    )


def services_cut_off(
    policy: Policy, sockets: tuple[ListeningSocket, ...], ssh: SshConnection | None
) -> tuple[ListeningSocket, ...]:
    """Exposed sockets the policy blocks for every source, other than the SSH session's port."""
    if not sockets:
        return ()  # nothing to judge: the index over every `from` list is not built
    ssh_port = ssh.server_port if ssh is not None else None
    index = reach_index(policy)
    return tuple(
        s
        for s in sockets
        if judge_socket(policy, s, index).verdict is SocketVerdict.BLOCKED
        and not (s.proto.value == "tcp" and s.port == ssh_port)
    )
