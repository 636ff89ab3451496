"""`apply --boot`: apply the policy unattended, or fall back to last-known-good.

At boot nobody can answer a prompt or read a traceback. So this path never prompts and waits
for the state dir's lock only briefly. It runs the lockout guard against the live sessions
(at early boot there are none, so nothing changes there): when `portguard.path` re-applies
an edit, a policy that would refuse a new connection from a live sshd session's peer to its
port is refused, the rules in force stay exactly as they are (no last-known-good fallback,
no record), and the command fails with one line. When the policy cannot be
used (any failure to read, parse or validate it, internal errors included, or the kernel
refuses it), the last-known-good ruleset from the state dir goes in force instead. A
damaged applied.json is a warning, not a stop. Over an absent table, a state dir that
cannot be written does not keep the rules out (no table is the most open state there is).
The outcome says so in one journal-friendly line, and the command fails so that systemd
marks the unit failed. With no usable last-known-good either, the rules stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from portguard.apply import (
    ApplyOutcome,
    Target,
    execute,
    gather_facts,
    load_target,
    plan_change,
)
from portguard.backends.nftables import KernelRefused, NftKernel, open_kernel
from portguard.confirm import read_confirm, revert_now, reverter_alive
from portguard.errors import PortguardError
from portguard.facts.sessions import live_sessions
from portguard.lockout import refusal_reason, sessions_cut
from portguard.model import Policy
from portguard.state import Action, StateDir

__all__ = ["BOOT_LOCK_TIMEOUT", "BootOutcome", "BootResult", "boot_apply"]

BOOT_LOCK_TIMEOUT = 10.0
MAX_REASON = 500


class BootResult(StrEnum):
    """How a boot apply ended."""

    APPLIED = "applied"  # the policy is in force (it was loaded now)
    UNCHANGED = "unchanged"  # the policy was already in force
    FELL_BACK = "fell-back"  # the policy was unusable; last-known-good is in force
    LEFT_AS_IS = "left-as-is"  # nothing could be applied; the rules are as they were
    REFUSED = "refused"  # the policy would cut a live admin session; the rules are as they were


@dataclass(frozen=True)
class BootOutcome:
    """The result of a boot apply and its one log line (starts with "portguard:")."""

    result: BootResult
    line: str
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the policy itself is in force (the unit should succeed)."""
        return self.result in (BootResult.APPLIED, BootResult.UNCHANGED)


def boot_apply(
    policy_path: Path, state: StateDir, *, lock_timeout: float = BOOT_LOCK_TIMEOUT
) -> BootOutcome:
    """Apply `policy_path` unattended; on an unusable policy, put last-known-good in force."""
    try:
        kernel = open_kernel()
    except PortguardError as error:
        return _left(f"{policy_path}: not applied: {_one_line(error)}")
    unconfirmed = _revert_unconfirmed(kernel, state)
    if unconfirmed is not None:
        return unconfirmed
    try:
        loaded, loaded_target = load_target(policy_path)
        target = replace(loaded_target, action=Action.BOOT)
    except Exception as error:  # any failure to read or validate falls back, internal too
        return _fall_back(f"{policy_path}: {_one_line(error)}", kernel, state, lock_timeout)
    refused = _guard(loaded.policy)
    if refused is not None:
        line = f"portguard: {policy_path}: not applied: {refused}; rules in force left as they are"
        return BootOutcome(BootResult.REFUSED, line)
    try:
        outcome = _execute(kernel, target, state, lock_timeout, promote=True)
    except KernelRefused as error:
        return _fall_back(f"{policy_path}: {_one_line(error)}", kernel, state, lock_timeout)
    except PortguardError as error:
        return _left(f"{policy_path}: not applied: {_one_line(error)}")
    count = len(loaded.warnings)
    noted = f" ({count} lint warning{'s' if count != 1 else ''})" if count else ""
    if outcome.changed:
        line = f"portguard: {policy_path}: applied{noted}"
        return BootOutcome(BootResult.APPLIED, line, outcome.warnings)
    line = f"portguard: {policy_path}: already in force{noted}"
    return BootOutcome(BootResult.UNCHANGED, line, outcome.warnings)


def _revert_unconfirmed(kernel: NftKernel, state: StateDir) -> BootOutcome | None:
    """After a reboot inside an `apply --confirm` window, put the way back in force.

    The reverter died with the machine; the rules awaiting confirmation were never
    confirmed, so they do not stay. With the reverter still running (a restart of the unit,
    no reboot), it keeps its deadline and the boot apply goes on as usual.
    """
    try:
        pending = read_confirm(state)
    except PortguardError as error:
        return _left(f"{_one_line(error)}; not reverted")
    if pending is None or reverter_alive(pending.reverter_pid):
        return None
    try:
        outcome = revert_now(kernel, state)
    except PortguardError as error:
        return _left(
            f"unconfirmed apply of {pending.awaiting_path}: revert failed: {_one_line(error)}"
        )
    how = "put back" if outcome is not None and outcome.changed else "kept"
    return BootOutcome(
        BootResult.FELL_BACK,
        f"portguard: the apply of {pending.awaiting_path} was never confirmed (deadline"
        f" {pending.deadline}); the rules in force before it are {how}; the policy file was"
        " not applied",
        outcome.warnings if outcome is not None else (),
    )


def _guard(policy: Policy) -> str | None:
    """Why `policy` must not replace the rules in force while sessions are live, or None.

    Sessions that cannot be read refuse too: the rules in force stay (a reboot, where no
    session exists yet, or `apply` with --force is the way past).
    """
    try:
        sessions = live_sessions(policy)
    except PortguardError as error:
        return _one_line_text(f"cannot see the live sessions: {error}")
    reason = refusal_reason(policy, None, sessions_cut(policy, sessions))
    return None if reason is None else _one_line_text(f"lockout guard: {reason}")


def _execute(
    kernel: NftKernel, target: Target, state: StateDir, lock_timeout: float, *, promote: bool
) -> ApplyOutcome:
    """Plan and execute under the lock (no prompt, nothing to compare a plan with)."""
    plan = plan_change(target, gather_facts(kernel, state))
    return execute(
        plan,
        kernel,
        state,
        lock_timeout=lock_timeout,
        promote=promote,
        verify_unchanged=False,
        keep_unrecorded=True,
    )


def _fall_back(reason: str, kernel: NftKernel, state: StateDir, lock_timeout: float) -> BootOutcome:
    records = state.read_records()
    good = records.last_known_good
    if good is None:
        damaged = f" ({'; '.join(records.warnings)})" if records.warnings else ""
        return _left(f"{reason}; no last-known-good ruleset in {state.path}{damaged}")
    target = Target(good.table, good.policy_path, good.policy_text, Action.BOOT_FALLBACK)
    try:
        outcome = _execute(kernel, target, state, lock_timeout, promote=False)
    except PortguardError as error:
        return _left(f"{reason}; last-known-good not applied either: {_one_line(error)}")
    how = "put in force" if outcome.changed else "kept in force"
    return BootOutcome(
        BootResult.FELL_BACK,
        f"portguard: {reason}; last-known-good ruleset ({_one_line_text(good.policy_path)},"
        f" applied {good.applied_at}) {how} instead",
        outcome.warnings,
    )


def _left(reason: str) -> BootOutcome:
    return BootOutcome(BootResult.LEFT_AS_IS, f"portguard: {reason}; rules left as they are")


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, PortguardError):
        text = f"internal error: {type(error).__name__}: {text}"
    return _one_line_text(text)


def _one_line_text(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]
