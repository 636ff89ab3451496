"""Pure: which history row `rollback` puts back, and the target it becomes."""

from __future__ import annotations

from pathlib import Path

from portguard.apply import Target
from portguard.errors import PortguardError
from portguard.history import HistoryEntry
from portguard.model import Policy
from portguard.policy import parse_policy
from portguard.state import Action

__all__ = ["SUCCEEDED", "RollbackError", "choose_entry", "entry_policy", "rollback_target"]

SUCCEEDED = ("applied", "recorded")
WALKED = (Action.APPLY, Action.BOOT)


class RollbackError(PortguardError):
    """No history row to roll back to, or the row cannot be used."""


def choose_entry(
    entries: list[HistoryEntry], in_force_digest: str | None, entry_id: int | None
) -> HistoryEntry:
    """Row `entry_id`, or by default the policy applied before the one in force.

    `entries` are newest first. Only applies (by hand or at boot) count for the default, so
    rollback after rollback walks further back: the one in force is the newest apply row
    whose digest is the live table's, the default the next older apply that differs.
    """
    succeeded = [e for e in entries if e.outcome in SUCCEEDED and e.action in WALKED]
    if entry_id is not None:
        chosen = next((e for e in entries if e.id == entry_id), None)
        if chosen is None:
            raise RollbackError(f"no history row {entry_id}")
        if chosen.outcome not in SUCCEEDED:
            raise RollbackError(f"history row {entry_id} did not succeed ({chosen.outcome})")
        return chosen
    current = next((i for i, e in enumerate(succeeded) if e.digest == in_force_digest), None)
    if current is None:
        raise RollbackError(
            "the rules in force are not in the history; name a row: portguard rollback ID"
        )
    for entry in succeeded[current + 1 :]:
        if entry.digest != in_force_digest:
            return entry
    raise RollbackError("no earlier change in the history to roll back to")


def rollback_target(entry: HistoryEntry) -> Target:
    """The change that puts `entry`'s rules back (no table, for a removal row)."""
    return Target(entry.table, entry.policy_path, entry.policy_text, Action.ROLLBACK)


def entry_policy(entry: HistoryEntry) -> Policy:
    """The row's policy, parsed again for the lockout guard (its set files as they are now)."""
    return parse_policy(
        entry.policy_text, entry.policy_path, base_dir=Path(entry.policy_path).parent
    ).policy
