"""Print a boot apply's one line and turn it into the exit status (`apply --boot`)."""

from __future__ import annotations

from pathlib import Path

from portguard.boot import BOOT_LOCK_TIMEOUT, boot_apply
from portguard.cli.output import err, out
from portguard.state import StateDir

__all__ = ["run_boot"]


def run_boot(policy: Path, state: StateDir, lock_timeout: float) -> int:
    """Apply POLICY the boot way; one line on stdout (0) or stderr (1, the unit fails)."""
    outcome = boot_apply(policy, state, lock_timeout=min(lock_timeout, BOOT_LOCK_TIMEOUT))
    for warning in outcome.warnings:
        err(f"portguard: warning: {warning}")
    if outcome.ok:
        out(outcome.line)
        return 0
    err(outcome.line)
    return 1
