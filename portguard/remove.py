"""Remove portguard's table (and nothing else) as a planned change: see apply.py."""

from __future__ import annotations

from portguard.apply import (
    DEFAULT_LOCK_TIMEOUT,
    ApplyOutcome,
    ChangePlan,
    Target,
    execute,
    gather_facts,
    plan_change,
)
from portguard.backends.nftables import NftKernel, open_kernel
from portguard.state import Action, StateDir

__all__ = ["plan_removal", "remove_table"]


def plan_removal(state: StateDir) -> tuple[ChangePlan, NftKernel]:
    """The removal as a plan (kernel_change is False when the table is not loaded)."""
    kernel = open_kernel()
    return plan_change(Target(None, action=Action.REMOVE), gather_facts(kernel, state)), kernel


def remove_table(
    state: StateDir,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    planned: tuple[ChangePlan, NftKernel] | None = None,
) -> ApplyOutcome:
    """Delete `table inet portguard` and record the removal (intent first, like apply).

    With `planned` (a plan shown to the admin) the removal stops if the table changed since.
    """
    plan, kernel = planned if planned is not None else plan_removal(state)
    return execute(
        plan, kernel, state, lock_timeout=lock_timeout, verify_unchanged=planned is not None
    )
