"""`portguard apply POLICY`: replace the portguard table in one transaction and record it."""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from portguard.apply import DEFAULT_LOCK_TIMEOUT, apply_policy, state_before_apply
from portguard.cli import windows_cmds
from portguard.cli.boot_report import run_boot
from portguard.cli.lockout_guard import guard_apply
from portguard.cli.output import out, print_warnings
from portguard.cli.state_options import LockTimeoutOption, StateDirOption, open_state_dir
from portguard.drift import RulesetState
from portguard.model import Policy
from portguard.policy import load_policy
from portguard.state import StateDir

__all__ = ["register"]

BEFORE_TEXT = MappingProxyType(
    {
        RulesetState.ABSENT: "table inet portguard was not loaded before",
        RulesetState.DIFFERS: "replaced the previously applied policy",
        RulesetState.DRIFTED: "replaced a table that had drifted from what portguard applied",
        RulesetState.IN_SYNC: "the record was incomplete, so the table was reloaded",
    }
)


def apply(
    policy: Annotated[Path, typer.Argument(help="The policy file to enforce.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Apply even if the policy would refuse this SSH session (SSH_CONNECTION).",
        ),
    ] = False,
    state_dir: StateDirOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    *,
    boot: Annotated[
        bool,
        typer.Option(
            "--boot",
            help="Unattended (systemd): no prompt, short lock wait, no lockout guard;"
            " an unusable policy puts last-known-good in force and exits 1.",
        ),
    ] = False,
) -> int:
    """Render POLICY and load it as table inet portguard, replacing the old one atomically."""
    if boot:
        return run_boot(policy, open_state_dir(state_dir), lock_timeout)
    loaded = load_policy(policy)
    print_warnings(loaded.warnings)
    guard_apply(loaded.policy, force=force)
    state = None if windows_cmds.on_windows() else open_state_dir(state_dir)
    if not yes and sys.stdin.isatty() and _changes_pending(loaded.policy, state):
        typer.confirm(f"Replace portguard's rules with the rules of {policy}?", abort=True)
    if state is None:
        return windows_cmds.apply_on_windows(policy, loaded.policy)
    policy_text = policy.read_text(encoding="utf-8")
    outcome = apply_policy(loaded.policy, policy_text, state, lock_timeout=lock_timeout)
    if outcome.changed:
        out(f"{policy}: applied ({BEFORE_TEXT[outcome.state_before]})")
    else:
        out(f"{policy}: unchanged, nothing to do")
    return 0


def _changes_pending(policy: Policy, state: StateDir | None) -> bool:
    """Whether apply would change anything (always True on Windows, where it is not known)."""
    return state is None or state_before_apply(policy, state) is not RulesetState.IN_SYNC


def register(app: typer.Typer) -> None:
    """Add `apply` to the app."""
    app.command("apply")(apply)
