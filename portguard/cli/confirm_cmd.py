"""`apply --confirm` as the CLI runs it, `portguard confirm`, and the hidden reverter command."""

from __future__ import annotations

import select
import signal
import sys
import time
from dataclasses import replace

import typer

from portguard.apply import ApplyOutcome, ChangePlan, execute
from portguard.backends.nftables import NftKernel, open_kernel
from portguard.cli.output import err, out
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.confirm import (
    REVERTER_COMMAND,
    PendingConfirm,
    confirm_pending,
    end_confirm,
    new_confirm,
    read_confirm,
    revert_now,
    start_reverter,
    wait_and_revert,
    write_confirm,
)
from portguard.errors import PortguardError
from portguard.state import StateDir

__all__ = ["execute_with_confirm", "register", "report_confirm"]


def execute_with_confirm(
    plan: ChangePlan,
    kernel: NftKernel,
    state: StateDir,
    seconds: float | None,
    *,
    lock_timeout: float,
    verify_unchanged: bool,
) -> tuple[ApplyOutcome, PendingConfirm | None]:
    """Execute `plan`; with `seconds`, arm the revert first (the confirmation it awaits).

    Without `seconds`, a successful change ends any pending confirmation (a new decision).
    With it, the way back is recorded and the reverter started before the kernel is touched;
    the new rules do not become last-known-good until `confirm`.
    """
    if seconds is None or not plan.kernel_change:
        outcome = execute(
            plan, kernel, state, lock_timeout=lock_timeout, verify_unchanged=verify_unchanged
        )
        if seconds is None and outcome.changed and end_confirm(state) is not None:
            err("portguard: this change ends the pending confirmation (nothing will be reverted)")
        return outcome, None
    earlier = read_confirm(state)
    pending = new_confirm(seconds, plan.target, kernel, state)
    write_confirm(state, pending)
    pending = replace(pending, reverter_pid=start_reverter(state))
    write_confirm(state, pending)
    try:
        outcome = execute(
            plan,
            kernel,
            state,
            lock_timeout=lock_timeout,
            verify_unchanged=verify_unchanged,
            promote=False,
        )
    except PortguardError:
        if earlier is None:
            end_confirm(state)
        raise
    return outcome, pending


def report_confirm(
    pending: PendingConfirm, kernel: NftKernel, state: StateDir, *, ask: bool
) -> None:
    """Say when the revert is due; with `ask`, ask on the terminal until then."""
    out(f"the previous rules come back at {pending.deadline} unless `portguard confirm` runs")
    if not ask:
        return
    sys.stdout.write("Keep the new rules? [y/N] ")
    sys.stdout.flush()
    wait = max(0.0, pending.deadline_epoch - time.time())
    readable, _, _ = select.select([sys.stdin], [], [], wait)
    answer = sys.stdin.readline().strip().lower() if readable else None
    if answer in ("y", "yes"):
        confirm_pending(kernel, state)
        out("confirmed: the new rules stay in force")
    elif answer is None:
        out("no answer: the previous rules are being put back")
    else:
        revert_now(kernel, state)
        out("reverted: the previous rules are back in force")


def confirm(state_dir: StateDirOption = None) -> int:
    """Keep the rules of an `apply --confirm` (exit 1 when nothing awaits confirmation)."""
    state = open_state_dir(state_dir)
    pending = confirm_pending(open_kernel(), state)
    out(f"confirmed: the rules in force stay (the revert due at {pending.deadline} is cancelled)")
    return 0


def revert_at_deadline(state_dir: StateDirOption = None) -> int:
    """Internal: wait for the pending confirmation's deadline, then revert unless confirmed."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wait_and_revert(open_kernel(), open_state_dir(state_dir))
    return 0


def register(app: typer.Typer) -> None:
    """Add `confirm` and the hidden reverter command to the app."""
    app.command("confirm")(confirm)
    app.command(REVERTER_COMMAND, hidden=True)(revert_at_deadline)
