"""Pure: would a policy cut off the SSH session that applies it, or other exposed services?"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from portguard.errors import PortguardError
from portguard.model import ListeningSocket, Policy
from portguard.plan import GENERIC_INTERFACE, SocketVerdict, judge_socket
from portguard.verdict import ConnState, Packet, PacketProto, Verdict, verdict

__all__ = [
    "LockoutRefused",
    "SshConnection",
    "lockout_reason",
    "parse_ssh_connection",
    "services_cut_off",
]


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
    ssh_port = ssh.server_port if ssh is not None else None
    return tuple(
        s
        for s in sockets
        if judge_socket(policy, s).verdict is SocketVerdict.BLOCKED
        and not (s.proto.value == "tcp" and s.port == ssh_port)
    )
