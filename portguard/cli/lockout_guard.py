"""The lockout guard as apply runs it: read the live sessions and SSH_CONNECTION, refuse or warn."""

from __future__ import annotations

import os
import sys

from portguard.cli.output import err
from portguard.errors import PortguardError
from portguard.facts import listening_sockets
from portguard.facts.sessions import live_sessions, route_interface
from portguard.lockout import (
    LockoutRefused,
    SshConnection,
    lockout_reason,
    parse_ssh_connection,
    refusal_reason,
    services_cut_off,
    session_warnings,
    sessions_cut,
)
from portguard.model import Policy

__all__ = ["arrival_interface", "guard_apply"]


def guard_apply(policy: Policy, *, force: bool) -> None:
    """Raise LockoutRefused if `policy` cuts a live admin session (unless force); warn of others.

    Admin sessions are the established connections to a port where sshd listens, and the
    session in SSH_CONNECTION. Sessions that cannot be read refuse too (unless force). The
    warnings go to stderr before apply's own confirmation prompt (a TTY without --yes,
    when the apply would change something).
    """
    ssh = parse_ssh_connection(os.environ.get("SSH_CONNECTION"))
    ssh_reason = lockout_reason(policy, ssh, arrival_interface(ssh))
    try:
        cut = sessions_cut(policy, live_sessions(policy))
    except PortguardError as why:
        _refuse_or_warn(ssh_reason or f"cannot see the live sessions: {why}", force=force)
    else:
        refusal = refusal_reason(policy, ssh_reason, cut)
        if refusal is not None:
            _refuse_or_warn(refusal, force=force)
        for line in session_warnings(cut, cut_now=sys.platform == "win32"):
            err(f"portguard: warning: {line}")
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


def _refuse_or_warn(reason: str, *, force: bool) -> None:
    if not force:
        raise LockoutRefused(
            f"portguard: refusing to apply: {reason}; nothing was changed"
            " (allow it in the policy, or use --force)"
        )
    err(f"portguard: warning: --force: {reason}")


def arrival_interface(ssh: SshConnection | None) -> str | None:
    """The interface the kernel routes the SSH client through (from the server address)."""
    if ssh is None:
        return None
    return route_interface(ssh.client, ssh.server)
