"""`apply --confirm`: a dead man's switch that puts the previous rules back unless confirmed.

The record `confirm.json` is written before the new rules go in. It holds the deadline, the
digest of the rendering awaiting confirmation, and the way back: the rendering that was in
force before (or none: no table). A detached process (`portguard revert-at-deadline`, its
own session, so a hang-up or a killed `apply` does not take it along) waits for the
deadline and then, unless `portguard confirm` removed the record, executes the way back
through the same fail-closed path as any apply. `apply --boot` honours a record left by a
reboot before the deadline (see boot.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from portguard.apply import (
    DEFAULT_LOCK_TIMEOUT,
    ApplyOutcome,
    ChangedSincePlan,
    Target,
    execute,
    gather_facts,
    plan_change,
)
from portguard.backends.nftables import NftKernel
from portguard.drift import table_in_force
from portguard.errors import PortguardError
from portguard.render.nft_table import table_from_json
from portguard.state import Action, StateDir, StateError, text_field

__all__ = [
    "CONFIRM_FILE",
    "REVERTER_COMMAND",
    "ConfirmError",
    "PendingConfirm",
    "clear_confirm",
    "confirm_pending",
    "end_confirm",
    "new_confirm",
    "read_confirm",
    "revert_now",
    "reverter_alive",
    "start_reverter",
    "stop_reverter",
    "wait_and_revert",
    "write_confirm",
]

CONFIRM_FILE = "confirm.json"
REVERTER_COMMAND = "revert-at-deadline"
POLL_SECONDS = 0.25
MAX_CONFIRM_SECONDS = 86_400


class ConfirmError(PortguardError):
    """Nothing to confirm, or a confirmation that no longer matches what is in force."""


@dataclass(frozen=True)
class PendingConfirm:
    """An apply awaiting confirmation and its way back."""

    token: str  # names this confirmation (a later --confirm apply writes a new one)
    deadline: str  # ISO 8601 UTC
    awaiting_digest: str  # the rendering that needs `confirm` to stay (for the record)
    awaiting_path: str
    revert_to: Target  # what goes back in at the deadline (table None: no table)
    reverter_pid: int | None = None

    @property
    def deadline_epoch(self) -> float:
        """The deadline as a POSIX timestamp."""
        return datetime.fromisoformat(self.deadline).timestamp()


def new_confirm(
    seconds: float, target: Target, kernel: NftKernel, state: StateDir
) -> PendingConfirm:
    """The confirmation record for applying `target` now, with the way back from the facts.

    A confirmation still pending keeps its way back (the rules confirmed last), so a second
    `--confirm` apply cannot make an unconfirmed policy the one to return to.
    """
    if not 0 < seconds <= MAX_CONFIRM_SECONDS:
        raise ConfirmError(f"--confirm takes 1 to {MAX_CONFIRM_SECONDS} seconds")
    if target.table is None:
        raise ConfirmError("--confirm needs a policy to apply")
    earlier = read_confirm(state)
    if earlier is not None:
        revert_to = earlier.revert_to
    else:
        facts = gather_facts(kernel, state)
        in_force = table_in_force(facts.records, facts.live)
        if facts.live is not None and in_force is None:
            raise ConfirmError(
                "the live table is not a rendering portguard knows (drifted), so --confirm"
                " has no way back to offer; apply without --confirm, or remove first"
            )
        applied = facts.records.applied
        revert_to = Target(
            in_force,
            applied.policy_path if applied is not None and in_force is not None else "",
            applied.policy_text if applied is not None and in_force is not None else "",
            Action.REVERT,
        )
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    return PendingConfirm(
        token=uuid.uuid4().hex,
        deadline=deadline.isoformat(timespec="seconds"),
        awaiting_digest=target.table.digest,
        awaiting_path=target.policy_path,
        revert_to=revert_to,
    )


def write_confirm(state: StateDir, pending: PendingConfirm) -> None:
    """Write the confirmation record (before the new rules go in)."""
    revert = pending.revert_to
    state.write_json_record(
        CONFIRM_FILE,
        {
            "token": pending.token,
            "deadline": pending.deadline,
            "awaiting_digest": pending.awaiting_digest,
            "awaiting_path": pending.awaiting_path,
            "revert_table": None if revert.table is None else revert.table.to_json(),
            "revert_policy_path": revert.policy_path,
            "revert_policy_text": revert.policy_text,
            "reverter_pid": pending.reverter_pid,
        },
    )


def read_confirm(state: StateDir) -> PendingConfirm | None:
    """The pending confirmation, if any; StateError when its record is damaged."""
    data = state.read_json_record(CONFIRM_FILE)
    if data is None:
        return None
    try:
        table = data.get("revert_table")
        pid = data.get("reverter_pid")
        pending = PendingConfirm(
            token=text_field(data, "token"),
            deadline=text_field(data, "deadline"),
            awaiting_digest=text_field(data, "awaiting_digest"),
            awaiting_path=text_field(data, "awaiting_path"),
            revert_to=Target(
                None if table is None else table_from_json(table),
                text_field(data, "revert_policy_path"),
                text_field(data, "revert_policy_text"),
                Action.REVERT,
            ),
            reverter_pid=pid if isinstance(pid, int) else None,
        )
        pending.deadline_epoch  # noqa: B018 - validates the deadline's format
    except ValueError as error:
        raise StateError(f"{state.path / CONFIRM_FILE}: damaged record: {error}") from None
    return pending


def clear_confirm(state: StateDir) -> None:
    """Forget the pending confirmation."""
    state.remove_record(CONFIRM_FILE)


def start_reverter(state: StateDir) -> int:
    """Start the detached process that reverts at the deadline; its pid."""
    env = {key: value for key, value in os.environ.items() if key != "PORTGUARD_PAUSE_AT"}
    # The same portguard as this process, wherever it was imported from.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "portguard", REVERTER_COMMAND, "--state-dir", str(state.path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: a hang-up does not reach it
        close_fds=True,
        env=env,
        cwd="/",
    )
    return process.pid


def confirm_pending(kernel: NftKernel, state: StateDir) -> PendingConfirm:
    """Keep the rules in force: promote them, drop the record, stop the reverter."""
    with state.lock(DEFAULT_LOCK_TIMEOUT):
        pending = read_confirm(state)
        if pending is None:
            raise ConfirmError("nothing awaits confirmation")
        facts = gather_facts(kernel, state)
        applied = facts.records.applied
        if table_in_force(facts.records, facts.live) is None or applied is None:
            raise ConfirmError(
                "the live table is not what portguard recorded; nothing was confirmed"
                f" (the previous rules still come back at {pending.deadline})"
            )
        state.promote_last_known_good(applied)
        clear_confirm(state)
    stop_reverter(pending.reverter_pid)
    return pending


def end_confirm(state: StateDir) -> PendingConfirm | None:
    """A plain apply or remove ends a pending confirmation (the admin chose anew)."""
    pending = read_confirm(state)
    if pending is not None:
        clear_confirm(state)
        stop_reverter(pending.reverter_pid)
    return pending


def wait_and_revert(kernel: NftKernel, state: StateDir) -> ApplyOutcome | None:
    """The reverter's life: wait for the deadline, then revert unless confirmed (None)."""
    pending = read_confirm(state)
    while pending is not None and time.time() < pending.deadline_epoch:
        time.sleep(min(POLL_SECONDS, max(0.0, pending.deadline_epoch - time.time())))
        current = read_confirm(state)
        if current is None or current.token != pending.token:
            return None  # confirmed, or a newer confirmation has its own reverter
    if pending is None:
        return None
    return revert_now(kernel, state, pending.token)


def revert_now(kernel: NftKernel, state: StateDir, token: str | None = None) -> ApplyOutcome | None:
    """Put the way back in force now (None: nothing pending, or `token` no longer pending)."""
    for _attempt in range(3):
        pending = read_confirm(state)
        if pending is None or (token is not None and pending.token != token):
            return None
        plan = plan_change(pending.revert_to, gather_facts(kernel, state))
        try:
            outcome = execute(plan, kernel, state, promote=False, lock_timeout=None)
        except ChangedSincePlan:
            continue
        clear_confirm(state)
        return outcome
    raise ConfirmError("the live table kept changing; the revert did not run")


def reverter_alive(pid: int | None) -> bool:
    """Whether `pid` is still a running reverter (not gone with a reboot, not reused)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return REVERTER_COMMAND.encode() in cmdline.read()
    except OSError:
        return False


def stop_reverter(pid: int | None) -> None:
    """SIGTERM the reverter, if that pid is still one (best effort; it would find nothing)."""
    if pid is not None and reverter_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
