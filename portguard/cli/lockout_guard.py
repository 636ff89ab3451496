"""The lockout guard as apply runs it: read SSH_CONNECTION and the sockets, refuse or warn."""

from __future__ import annotations

import os

from portguard.cli.output import err
from portguard.errors import PortguardError
from portguard.facts import listening_sockets
from portguard.lockout import (
    LockoutRefused,
    SshConnection,
    lockout_reason,
    parse_ssh_connection,
    services_cut_off,
)
from portguard.model import Policy

__all__ = ["arrival_interface", "guard_apply"]


def guard_apply(policy: Policy, *, force: bool) -> None:
    """Raise LockoutRefused if `policy` cuts off this SSH session (unless force); warn of others.

    The warnings go to stderr before apply's own confirmation prompt (a TTY without --yes,
    when the apply would change something).
    """
    ssh = parse_ssh_connection(os.environ.get("SSH_CONNECTION"))
    reason = lockout_reason(policy, ssh, arrival_interface(ssh))
    if reason is not None and not force:
        raise LockoutRefused(
            f"portguard: refusing to apply: {reason}; nothing was changed"
            " (allow it in the policy, or use --force)"
        )
    if reason is not None:
        err(f"portguard: warning: --force: {reason}")
    try:
        sockets = listening_sockets()
    except PortguardError as why:  # the warning is a courtesy; it must not stop the apply
        err(f"portguard: warning: cannot list the listening sockets: {why}")
        return
    for sock in services_cut_off(policy, sockets, ssh):
        owner = f"{sock.process or '?'} (pid {sock.pid})" if sock.pid else "an unknown process"
        err(
            f"portguard: warning: {sock.proto.value} {sock.address} port {sock.port},"
            f" held by {owner}, becomes unreachable from other hosts"
        )


def arrival_interface(ssh: SshConnection | None) -> str | None:
    """The local interface holding the session's server address, if one does."""
    if ssh is None:
        return None
    import psutil  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - only over SSH

    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            if address.address.split("%", 1)[0] == str(ssh.server):
                return str(name)
    return None
