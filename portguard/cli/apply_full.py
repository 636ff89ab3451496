"""`apply` past the no-op decision: load, guard, plan, load the table, record (cli/apply_cmd.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType

import typer

from portguard.apply import ApplyOutcome, Target, gather_facts, load_target, plan_change
from portguard.backends.nftables import open_kernel
from portguard.cli import windows_cmds
from portguard.cli.confirm_cmd import execute_with_confirm, report_confirm
from portguard.cli.lockout_guard import guard_apply
from portguard.cli.output import out, print_warning_count, print_warnings, print_warnings_text
from portguard.drift import RulesetState
from portguard.noop import NoopProof, applied_stat, forget_proof, record_proof
from portguard.policy import load_policy
from portguard.policy.load import LoadedPolicy
from portguard.state import StateDir

__all__ = ["apply_fully", "apply_here_on_windows"]

BEFORE_TEXT = MappingProxyType(
    {
        RulesetState.ABSENT: "table inet portguard was not loaded before",
        RulesetState.DIFFERS: "replaced the previously applied policy",
        RulesetState.DRIFTED: "replaced a table that had drifted from what portguard applied",
        RulesetState.IN_SYNC: "the record was incomplete, so the table was reloaded",
    }
)


def apply_here_on_windows(policy: Path, *, yes: bool, force: bool) -> int:
    """`apply` on a Windows host: guard, ask, then make the rule group hold POLICY's rules."""
    loaded = load_policy(policy)
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    guard_apply(loaded.policy, force=force)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Replace portguard's rules with the rules of {policy}?", abort=True)
    return windows_cmds.apply_on_windows(policy, loaded.policy)


def apply_fully(
    policy: Path,
    state: StateDir,
    *,
    yes: bool,
    force: bool,
    confirm: float | None,
    lock_timeout: float,
) -> int:
    """`apply` with nftables when the no-op proof did not hold: the whole way, then record."""
    loaded, target = load_target(policy)
    guard_apply(loaded.policy, force=force)
    kernel = open_kernel()
    plan = plan_change(target, gather_facts(kernel, state))
    if plan.kernel_change or plan.record_change:
        print_warnings(loaded.warnings, loaded.omitted_warnings)
    else:  # an unchanged re-apply: the warnings were shown when it went in
        print_warning_count(len(loaded.warnings) + loaded.omitted_warnings)
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
