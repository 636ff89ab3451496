"""`portguard apply POLICY`: replace the portguard table in one transaction and record it.

This module imports only what a run needs up to the no-op decision (portguard/noop.py), so
an unchanged re-apply pays for no YAML, renderer, lockout guard or back end. Everything
else -- load, guard, plan, load the table, record -- is cli/apply_full.py, imported when
the decision cannot prove the apply unchanged (and `--boot`, Windows: their own modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.cli import windows_cmds
from portguard.cli.output import out, print_warning_count
from portguard.cli.state_options import LockTimeoutOption, StateDirOption, open_state_dir
from portguard.noop import proven_unchanged
from portguard.state import DEFAULT_LOCK_TIMEOUT

__all__ = ["register"]


def apply(
    policy: Annotated[Path, typer.Argument(help="The policy file to enforce.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Apply even if the policy would refuse a live admin session (an established"
            " connection to a port sshd listens on, or SSH_CONNECTION).",
        ),
    ] = False,
    state_dir: StateDirOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    *,
    boot: Annotated[
        bool,
        typer.Option(
            "--boot",
            help="Unattended (systemd): no prompt, short lock wait; a policy that would cut a"
            " live sshd session is refused (rules kept, exit 1); an unusable policy puts"
            " last-known-good in force and exits 1.",
        ),
    ] = False,
    confirm: Annotated[
        float | None,
        typer.Option(
            "--confirm",
            metavar="SECONDS",
            help="Put the previous rules back after SECONDS unless `portguard confirm` runs"
            " (or you answer yes at the prompt).",
        ),
    ] = None,
) -> int:
    """Render POLICY and load it as table inet portguard, replacing the old one atomically."""
    if boot:
        from portguard.cli.boot_report import run_boot  # noqa: PLC0415 - systemd only

        return run_boot(policy, open_state_dir(state_dir), lock_timeout)
    if windows_cmds.on_windows():
        from portguard.cli.apply_full import apply_here_on_windows  # noqa: PLC0415

        return apply_here_on_windows(policy, yes=yes, force=force)
    state = open_state_dir(state_dir)
    if confirm is None and (proof := proven_unchanged(str(policy), state)) is not None:
        # Inputs and live ruleset provably as recorded (portguard/noop.py): no rule changes,
        # so nobody can be cut off and there is nothing to load, render or list.
        print_warning_count(len(proof.warnings) + proof.omitted_warnings)
        out(f"{policy}: unchanged, nothing to do")
        return 0
    from portguard.cli.apply_full import apply_fully  # noqa: PLC0415 - not when unchanged

    return apply_fully(
        policy, state, yes=yes, force=force, confirm=confirm, lock_timeout=lock_timeout
    )


def register(app: typer.Typer) -> None:
    """Add `apply` to the app."""
    app.command("apply")(apply)
