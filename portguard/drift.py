"""Pure: which known rendering the live table is, and how it relates to a new rendering."""

from __future__ import annotations

import difflib
from enum import StrEnum

from portguard.facts.ruleset import LiveTable
from portguard.render.nft_table import NftTable
from portguard.state import Records

__all__ = ["RulesetState", "classify", "table_in_force", "unified_diff", "unrecorded"]


class RulesetState(StrEnum):
    """Where the live `inet portguard` table stands."""

    ABSENT = "absent"
    IN_SYNC = "in-sync"
    DIFFERS = "differs"
    DRIFTED = "drifted"


def table_in_force(records: Records, live: LiveTable | None) -> NftTable | None:
    """The known rendering the live table is, if it is one (None: absent or drifted).

    It is the applied record's when the listing is the one recorded and the marker agrees;
    else a pending change's, when an interrupted apply got its rules in before its record.
    """
    if live is None:
        return None
    applied = records.applied
    if applied is not None and live.listing == applied.listing and live.marker == applied.digest:
        return applied.table
    pending = records.pending
    if pending is not None and pending.table is not None and live.marker == pending.table.digest:
        return pending.table
    return None


def unrecorded(records: Records, live: LiveTable | None) -> bool:
    """Whether the live table is a pending change's rendering that no record names yet."""
    in_force = table_in_force(records, live)
    applied = records.applied
    return in_force is not None and (applied is None or in_force is not applied.table)


def classify(rendering: NftTable | None, records: Records, live: LiveTable | None) -> RulesetState:
    """Absent (no rules), drifted (no known rendering), differs (not `rendering`), or in-sync.

    A table with no chain at all (only the unused sets of a first apply that was killed)
    filters nothing, so it is absent; the next apply removes those sets.
    """
    if live is None or not (live.has_chain or live.foreign):
        return RulesetState.ABSENT
    in_force = table_in_force(records, live)
    if in_force is None:
        return RulesetState.DRIFTED
    if rendering is not None and rendering.digest != in_force.digest:
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
