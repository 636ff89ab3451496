"""`portguard apply POLICY`: replace the portguard table in one transaction and record it."""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from portguard.apply import (
    DEFAULT_LOCK_TIMEOUT,
    ApplyOutcome,
    Target,
    gather_facts,
    load_target,
    plan_change,
)
from portguard.backends.nftables import open_kernel
from portguard.cli import windows_cmds
from portguard.cli.boot_report import run_boot
from portguard.cli.confirm_cmd import execute_with_confirm, report_confirm
from portguard.cli.lockout_guard import guard_apply
from portguard.cli.output import err, out, print_warnings, print_warnings_text
from portguard.cli.state_options import LockTimeoutOption, StateDirOption, open_state_dir
from portguard.drift import RulesetState
from portguard.noop import NoopProof, applied_stat, forget_proof, proven_unchanged, record_proof
from portguard.policy import load_policy
from portguard.policy.load import LoadedPolicy
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
        return run_boot(policy, open_state_dir(state_dir), lock_timeout)
    if windows_cmds.on_windows():
        loaded = load_policy(policy)
        print_warnings(loaded.warnings, loaded.omitted_warnings)
        guard_apply(loaded.policy, force=force)
        if not yes and sys.stdin.isatty():
            typer.confirm(f"Replace portguard's rules with the rules of {policy}?", abort=True)
        return windows_cmds.apply_on_windows(policy, loaded.policy)
    state = open_state_dir(state_dir)
    if confirm is None and (proof := proven_unchanged(str(policy), state)) is not None:
        # Inputs and live ruleset provably as recorded (portguard/noop.py): no rule changes,
        # so nobody can be cut off and there is nothing to load, render or list.
        _print_warning_count(len(proof.warnings) + proof.omitted_warnings)
        out(f"{policy}: unchanged, nothing to do")
        return 0
    loaded, target = load_target(policy)
    guard_apply(loaded.policy, force=force)
    kernel = open_kernel()
    plan = plan_change(target, gather_facts(kernel, state))
    if plan.kernel_change or plan.record_change:
        print_warnings(loaded.warnings, loaded.omitted_warnings)
    else:  # an unchanged re-apply: the warnings were shown when it went in
        _print_warning_count(len(loaded.warnings) + loaded.omitted_warnings)
    print_warnings_text(plan.facts.records.warnings)
    # What the admin confirmed is what goes in: after a prompt, a table that changed in the
    # meantime stops the apply. Unprompted, the plan is made again under the lock.
    prompted = not yes and sys.stdin.isatty() and plan.kernel_change
    if prompted:
        typer.confirm(f"Replace portguard's rules with the rules of {policy}?", abort=True)
    outcome, awaiting = execute_with_confirm(
        plan, kernel, state, confirm, lock_timeout=lock_timeout, verify_unchanged=prompted
    )
    print_warnings_text(outcome.warnings[len(plan.facts.records.warnings) :])
    if outcome.changed:
        out(f"{policy}: applied ({BEFORE_TEXT[outcome.state_before]})")
    elif plan.record_change:
        out(f"{policy}: already in force; recorded")
    else:
        out(f"{policy}: unchanged, nothing to do")
    if awaiting is not None:
        report_confirm(awaiting, kernel, state, ask=not yes and sys.stdin.isatty())
    else:
        _record_noop_proof(state, loaded, target, outcome)
    return 0


def _print_warning_count(count: int) -> None:
    """An unchanged re-apply names how many lint warnings there are, not each one again."""
    if count:
        err(f"portguard: {count} lint warning{'' if count == 1 else 's'} (see `portguard check`)")


def _record_noop_proof(
    state: StateDir, loaded: LoadedPolicy, target: Target, outcome: ApplyOutcome
) -> None:
    """After a clean apply, the proof that lets the same apply skip everything next time."""
    forget_proof(state)  # whatever happens, an older proof no longer describes the records
    stat = applied_stat(state)
    if (
        outcome.generation is None
        or target.inputs is None
        or outcome.applied is None
        or outcome.applied.table.digest != (target.table.digest if target.table else None)
        or outcome.warnings
        or stat is None
    ):
        return
    record_proof(
        state,
        NoopProof(
            policy_path=target.policy_path,
            inputs=target.inputs,
            set_files=loaded.set_files,
            generation=outcome.generation,
            applied_stat=stat,
            warnings=tuple(str(w) for w in loaded.warnings),
            omitted_warnings=loaded.omitted_warnings,
        ),
    )


def register(app: typer.Typer) -> None:
    """Add `apply` to the app."""
    app.command("apply")(apply)
