"""`apply --boot`: apply the policy unattended, or fall back to last-known-good.

At boot nobody can answer a prompt or read a traceback. So this path never prompts, waits for
the state dir's lock only briefly, and skips the lockout guard. When the policy cannot be
used (it fails to load, including a missing file, or the kernel refuses it), the
last-known-good ruleset from the state dir goes in force instead. The outcome says so in one
journal-friendly line, and the command fails so that systemd marks the unit failed. With no
last-known-good either, the rules stay exactly as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from portguard.apply import apply_policy, apply_rendered
from portguard.backends.nftables import KernelRefused
from portguard.errors import PortguardError
from portguard.policy import load_policy
from portguard.state import StateDir

__all__ = ["BOOT_LOCK_TIMEOUT", "BootOutcome", "BootResult", "boot_apply"]

BOOT_LOCK_TIMEOUT = 10.0


class BootResult(StrEnum):
    """How a boot apply ended."""

    APPLIED = "applied"  # the policy is in force (it was loaded now)
    UNCHANGED = "unchanged"  # the policy was already in force
    FELL_BACK = "fell-back"  # the policy was unusable; last-known-good is in force
    LEFT_AS_IS = "left-as-is"  # nothing could be applied; the rules are as they were


@dataclass(frozen=True)
class BootOutcome:
    """The result of a boot apply and its one log line (starts with "portguard:")."""

    result: BootResult
    line: str

    @property
    def ok(self) -> bool:
        """Whether the policy itself is in force (the unit should succeed)."""
        return self.result in (BootResult.APPLIED, BootResult.UNCHANGED)


def boot_apply(
    policy_path: Path, state: StateDir, *, lock_timeout: float = BOOT_LOCK_TIMEOUT
) -> BootOutcome:
    """Apply `policy_path` unattended; on an unusable policy, put last-known-good in force."""
    try:
        loaded = load_policy(policy_path)
        policy_text = policy_path.read_text(encoding="utf-8")
    except (PortguardError, OSError, UnicodeDecodeError) as error:
        return _fall_back(_one_line(error), state, lock_timeout)
    try:
        outcome = apply_policy(loaded.policy, policy_text, state, lock_timeout=lock_timeout)
    except KernelRefused as error:
        return _fall_back(f"{policy_path}: {_one_line(error)}", state, lock_timeout)
    except PortguardError as error:
        return _left(f"{policy_path}: not applied: {_one_line(error)}")
    warnings = len(loaded.warnings)
    noted = f" ({warnings} lint warning{'s' if warnings != 1 else ''})" if warnings else ""
    if outcome.changed:
        return BootOutcome(BootResult.APPLIED, f"portguard: {policy_path}: applied{noted}")
    return BootOutcome(BootResult.UNCHANGED, f"portguard: {policy_path}: already in force{noted}")


def _fall_back(reason: str, state: StateDir, lock_timeout: float) -> BootOutcome:
    try:
        good = state.read_last_known_good()
    except PortguardError as error:
        return _left(f"{reason}; last-known-good unusable: {_one_line(error)}")
    if good is None:
        return _left(f"{reason}; no last-known-good ruleset in {state.path}")
    try:
        outcome = apply_rendered(
            good.rendered,
            good.policy_path,
            good.policy_text,
            state,
            lock_timeout=lock_timeout,
            promote=False,
        )
    except PortguardError as error:
        return _left(f"{reason}; last-known-good not applied either: {_one_line(error)}")
    how = "put in force" if outcome.changed else "kept in force"
    return BootOutcome(
        BootResult.FELL_BACK,
        f"portguard: {reason}; last-known-good ruleset ({good.policy_path},"
        f" applied {good.applied_at}) {how} instead",
    )


def _left(reason: str) -> BootOutcome:
    return BootOutcome(BootResult.LEFT_AS_IS, f"portguard: {reason}; rules left as they are")


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())
