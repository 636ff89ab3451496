"""Carry the records' generation proofs over a command's own commits (bans, unbans).

applied.json (facts/proven.py) and noop.json (noop.py) each name the ruleset generation at
which they were last true. A ban commits to the ban sets, which no record compares, so the
table is still exactly the record's afterwards: when the ban's commits were the only ones
(the generation moved by exactly their number) both proofs move to the new generation, and
the next `status` or `apply` need not list the table. Anything else in between, and the
proofs stay behind (the next command lists the table and compares it, as always).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from portguard.facts.generation import Commits
from portguard.noop import applied_stat, carry_noop_proof
from portguard.state import StateDir, StateError

__all__ = ["carry_proof"]


def carry_proof(state: StateDir, commits: Commits) -> None:
    """Move applied.json's and noop.json's generation from `before` to `after` (under the
    state dir's lock; best effort: a proof left behind only costs a listing later)."""
    if not commits.alone or commits.before is None or commits.after is None:
        return
    with contextlib.suppress(StateError):
        applied = state.read_applied()
        if applied is None or state.read_pending() is not None:
            return
        if applied.generation != commits.before:
            return
        old_stat = applied_stat(state)
        state.record_applied(replace(applied, generation=commits.after))
        carry_noop_proof(state, commits.before, commits.after, old_stat)
