"""Pure: how the live portguard table relates to what was applied and to a new rendering."""

from __future__ import annotations

import difflib
from enum import StrEnum

from portguard.state import AppliedState

__all__ = ["RulesetState", "classify", "unified_diff"]


class RulesetState(StrEnum):
    """Where the live `inet portguard` table stands."""

    ABSENT = "absent"
    IN_SYNC = "in-sync"
    DIFFERS = "differs"
    DRIFTED = "drifted"


def classify(
    rendered_new: str | None, applied: AppliedState | None, live_listing: str | None
) -> RulesetState:
    """Absent (no table), drifted (not what we recorded), differs (new rendering), or in-sync."""
    if live_listing is None:
        return RulesetState.ABSENT
    if applied is None or live_listing != applied.listing:
        return RulesetState.DRIFTED
    if rendered_new is not None and rendered_new != applied.rendered:
        return RulesetState.DIFFERS
    return RulesetState.IN_SYNC


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of two texts ("" when they are equal)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
