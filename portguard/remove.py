"""Remove portguard's table (and nothing else) under the state dir's lock, and record it."""

from __future__ import annotations

from portguard.apply import DEFAULT_LOCK_TIMEOUT
from portguard.backends.nftables import delete_table, open_nftables
from portguard.state import StateDir

__all__ = ["remove_table"]


def remove_table(state: StateDir, *, lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT) -> bool:
    """Delete `table inet portguard` and record the removal; True if a table was deleted."""
    open_nftables()  # fail early and clearly: not root, or python-nftables missing
    with state.lock(lock_timeout):
        deleted = delete_table()
        state.record_removed()
    return deleted
