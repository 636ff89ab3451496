"""Runtime bans as a command: validate the target, guard the admin's session, ban, record.

The kernel side is backends/bans.py; this module decides whether a ban may be made and
notes it in the history of the state dir, where one exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

from portguard.backends.bans import add_ban, remove_ban
from portguard.backends.nftables import NftKernel
from portguard.errors import PortguardError
from portguard.facts.generation import Commits, read_generation
from portguard.history import HistoryError, note_change, trusted_state_dir
from portguard.lockout import LockoutRefused, SshConnection
from portguard.model import Network
from portguard.proof_carry import carry_proof
from portguard.render.nft_table import NftTable
from portguard.render.nftables import safe_comment
from portguard.state import Action, StateDir

__all__ = ["BanChange", "ban", "parse_target", "unban"]

LOCK_TIMEOUT = 10.0  # seconds to wait for an apply holding the state dir to finish


@dataclass(frozen=True)
class BanChange:
    """A ban or unban as a history row (no policy, no table)."""

    action: Action
    policy_path: str = ""
    policy_text: str = ""
    table: NftTable | None = None


def parse_target(text: str) -> Network:
    """An address or CIDR from the command line (host bits are refused, not guessed)."""
    try:
        return ip_network(text.strip(), strict=True)
    except ValueError:
        try:
            ip_network(text.strip(), strict=False)
        except ValueError:
            raise PortguardError(f"'{text[:80]}' is not an IP address or CIDR network") from None
        raise PortguardError(
            f"'{text[:80]}' has host bits set; write {ip_network(text.strip(), strict=False)}"
        ) from None


def lockout_reason(network: Network, ssh: SshConnection | None) -> str | None:
    """Why banning `network` would cut off this SSH session (None: it would not)."""
    if network.prefixlen == 0:
        return f"banning {network} would drop every {'IPv4' if network.version == 4 else 'IPv6'}"
    if ssh is not None and ssh.client.version == network.version and ssh.client in network:
        return f"your SSH session comes from {ssh.client}, inside {network}"
    return None


def ban(
    kernel: NftKernel,
    state: StateDir | None,
    network: Network,
    *,
    timeout_s: int | None,
    comment: str | None,
    ssh: SshConnection | None,
    force: bool,
) -> tuple[str, tuple[str, ...]]:
    """Ban `network` now; the one-line outcome and any history warnings."""
    reason = lockout_reason(network, ssh)
    if reason is not None and not force:
        raise LockoutRefused(f"refusing to ban {network}: {reason}; use --force to ban anyway")
    text = safe_comment(comment) if comment else None
    before = read_generation()
    folded = add_ban(kernel, network, timeout_s, text)
    commits = Commits(before, read_generation(), 2 if folded else 1)
    outcome = f"banned {network}" + (f" for {timeout_s}s" if timeout_s else " until unbanned")
    if folded:
        outcome += f" (replacing the bans on {', '.join(map(str, folded))})"
    if text:
        outcome += f": {text}"
    return outcome, _note(state, Action.BAN, outcome, commits)


def unban(
    kernel: NftKernel, state: StateDir | None, network: Network
) -> tuple[str, tuple[str, ...]]:
    """Lift the ban on `network`; the one-line outcome and any history warnings."""
    before = read_generation()
    remove_ban(kernel, network)
    commits = Commits(before, read_generation(), 1)
    outcome = f"unbanned {network}"
    return outcome, _note(state, Action.UNBAN, outcome, commits)


def _note(
    state: StateDir | None, action: Action, outcome: str, commits: Commits
) -> tuple[str, ...]:
    """The history row for a ban, where the state dir exists and is trusted; the records'
    generation proofs are carried over the ban's own commits (records/carry_proof)."""
    if state is None:
        return ()
    try:
        if not trusted_state_dir(state.path):
            return ()
    except HistoryError as error:
        return (f"history not recorded: {error}",)
    try:
        with state.lock(timeout=LOCK_TIMEOUT):
            carry_proof(state, commits)
            return note_change(state, BanChange(action), outcome)
    except PortguardError as error:  # the ban is in force: a missed row is only a warning
        return (f"history not recorded: {error}",)
