"""Remove portguard's table (and nothing else) as a planned change: see apply.py."""

from __future__ import annotations

from portguard.apply import (
    DEFAULT_LOCK_TIMEOUT,
    ApplyOutcome,
    Target,
    execute,
    gather_facts,
    plan_change,
)
from portguard.backends.nftables import open_kernel
from portguard.state import Action, StateDir

__all__ = ["remove_table"]


def remove_table(
    state: StateDir, *, lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT
) -> ApplyOutcome:
    """Delete `table inet portguard` and record the removal (intent first, like apply)."""
    kernel = open_kernel()
    plan = plan_change(Target(None, action=Action.REMOVE), gather_facts(kernel, state))
    return execute(plan, kernel, state, lock_timeout=lock_timeout, verify_unchanged=False)
