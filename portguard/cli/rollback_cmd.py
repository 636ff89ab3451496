"""`portguard rollback [ID]`: put the rules of a history row back, through apply's path."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from portguard.apply import DEFAULT_LOCK_TIMEOUT, gather_facts, plan_change
from portguard.backends.nftables import open_kernel
from portguard.cli.confirm_cmd import execute_with_confirm, report_confirm
from portguard.cli.lockout_guard import guard_apply
from portguard.cli.output import err, out, print_warnings_text
from portguard.cli.state_options import LockTimeoutOption, StateDirOption, open_state_dir
from portguard.drift import table_in_force
from portguard.errors import PortguardError
from portguard.history import History
from portguard.rollback import RollbackError, choose_entry, entry_policy, rollback_target

__all__ = ["register"]


def rollback(
    entry_id: Annotated[
        int | None,
        typer.Argument(metavar="[ID]", help="History row (default: the change before this one)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    *,
    force: Annotated[
        bool, typer.Option("--force", help="Roll back even if it would cut a live admin session.")
    ] = False,
    confirm: Annotated[
        float | None,
        typer.Option(
            "--confirm", metavar="SECONDS", help="Revert unless `portguard confirm` runs in time."
        ),
    ] = None,
    state_dir: StateDirOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> int:
    """Put the rules of history row ID back in force (same path, guard and records as apply)."""
    state = open_state_dir(state_dir)
    kernel = open_kernel()
    facts = gather_facts(kernel, state)
    print_warnings_text(facts.records.warnings)
    in_force = table_in_force(facts.records, facts.live)
    entry = choose_entry(
        History.of(state).entries(), in_force.digest if in_force else None, entry_id
    )
    if entry.table is not None:
        try:
            policy = entry_policy(entry)
        except PortguardError as error:
            if not force:
                raise RollbackError(
                    f"history row {entry.id}: cannot check it against live admin sessions"
                    f" ({error}); use --force to roll back anyway"
                ) from None
            err(f"portguard: warning: --force: lockout guard not run: {error}")
        else:
            guard_apply(policy, force=force)
    plan = plan_change(rollback_target(entry), facts)
    prompted = not yes and sys.stdin.isatty() and plan.kernel_change
    if prompted:
        typer.confirm(
            f"Put back the rules of history row {entry.id} ({entry.policy_path}, {entry.at})?",
            abort=True,
        )
    outcome, awaiting = execute_with_confirm(
        plan, kernel, state, confirm, lock_timeout=lock_timeout, verify_unchanged=prompted
    )
    print_warnings_text(outcome.warnings[len(facts.records.warnings) :])
    what = f"history row {entry.id} ({entry.policy_path}, {entry.at})"
    out(f"rolled back to {what}" if outcome.changed else f"{what} is already in force")
    if awaiting is not None:
        report_confirm(awaiting, kernel, state, ask=not yes and sys.stdin.isatty())
    return 0


def register(app: typer.Typer) -> None:
    """Add `rollback` to the app."""
    app.command("rollback")(rollback)
