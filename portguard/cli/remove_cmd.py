"""`portguard remove`: delete table inet portguard, and nothing else."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from portguard.apply import DEFAULT_LOCK_TIMEOUT
from portguard.cli import windows_cmds
from portguard.cli.output import out, print_warnings_text
from portguard.cli.state_options import LockTimeoutOption, StateDirOption, open_state_dir
from portguard.confirm import end_confirm
from portguard.remove import plan_removal, remove_table

__all__ = ["register"]


def remove(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    state_dir: StateDirOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> int:
    """Delete table inet portguard (inbound traffic is then unfiltered by portguard)."""
    if windows_cmds.on_windows():
        if not yes and sys.stdin.isatty():
            typer.confirm("Delete portguard's rules and stop enforcing the policy?", abort=True)
        return windows_cmds.remove_on_windows()
    state = open_state_dir(state_dir)
    planned = None
    if not yes and sys.stdin.isatty():
        planned = plan_removal(state)  # nothing loaded: nothing to ask about
        if planned[0].kernel_change:
            typer.confirm("Delete portguard's rules and stop enforcing the policy?", abort=True)
    outcome = remove_table(state, lock_timeout=lock_timeout, planned=planned)
    print_warnings_text(outcome.warnings)
    if outcome.changed and end_confirm(state) is not None:
        out("portguard: this removal ends the pending confirmation (nothing will be reverted)")
    if outcome.changed:
        out("removed table inet portguard")
    else:
        out("table inet portguard was not loaded; nothing to do")
    return 0


def register(app: typer.Typer) -> None:
    """Add `remove` to the app."""
    app.command("remove")(remove)
