"""Named steps of the commands that change rules, where fault-injection tests can stop them.

With `PORTGUARD_PAUSE_AT=STEP` in its environment, a process stops itself (SIGSTOP) when it
reaches STEP, so a test can do something real at exactly that point (kill -9 it, fill or
remount the state dir, change the live table) and then continue it (SIGCONT) or not. Without
the variable a checkpoint costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["PAUSE_ENV", "STEPS", "checkpoint"]

PAUSE_ENV = "PORTGUARD_PAUSE_AT"
STEPS = (
    "locked",  # the lock is held, facts re-read
    "writing pending.json",  # each record: its temp file is written, not yet renamed
    "pending-written",  # the intent is on disk, the kernel untouched
    "leftovers-deleted",  # unused sets of an interrupted apply are gone
    "sets-filled",  # the new generation's sets are loaded, unused
    "rules-swapped",  # the new rules are live (or the table deleted), nothing recorded yet
    "writing applied.json",
    "writing removed.json",
    "recorded",  # applied.json (or removed.json) written
    "writing last-known-good.json",
    "promoted",  # last-known-good written
    "rolled-back",  # after a record failure, the previous rules are back
)


def checkpoint(step: str) -> None:
    """Stop this process here if PORTGUARD_PAUSE_AT names `step` (a test hook), once.

    The variable is dropped first, so that a rollback passing the same step runs through.
    """
    if os.environ.get(PAUSE_ENV) == step:
        del os.environ[PAUSE_ENV]
        os.kill(os.getpid(), signal.SIGSTOP)
