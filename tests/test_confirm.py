"""`apply --confirm`: the previous rules come back at the deadline unless `confirm` runs.

Proven with packets from the scanner (tests/faultlab.py names the policy in force), also
when the calling process and its process group are killed right after the apply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from portguard.state import StateDir
from tests.faultlab import FaultLab
from tests.netns import portguard_argv

pytestmark = pytest.mark.netns

DEADLINE = 4  # seconds: long enough for the apply and a probe, short for the suite
PAST_DEADLINE = DEADLINE + 6  # the reverter polls; a loaded machine gets slack


def _apply(fl: FaultLab, name: str, state: Path, *extra: str) -> str:
    done = fl.run("apply", str(fl.policy(name)), "--yes", "--state-dir", str(state), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_for(fl: FaultLab, name: str, seconds: float) -> str:
    """Probe until `name` is in force or `seconds` pass; the last policy seen."""
    deadline = time.monotonic() + seconds
    seen = fl.in_force()
    while seen != name and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = fl.in_force()
    return seen


@pytest.mark.parametrize("before", ["old", "none"])
def test_unconfirmed_apply_is_reverted(fl: FaultLab, tmp_path: Path, before: str) -> None:
    """Without `confirm`, the previous rules (or no table) are back after the deadline."""
    state = tmp_path / "state"
    if before == "old":
        _apply(fl, "old", state)
    out = _apply(fl, "new", state, "--confirm", str(DEADLINE))
    assert "come back at" in out
    assert fl.in_force() == "new"
    assert _wait_for(fl, before, PAST_DEADLINE) == before
    assert not (state / "confirm.json").exists()
    good = StateDir(state).read_last_known_good()
    assert (good.policy_path if good else None) == (
        str(fl.policy("old")) if before == "old" else None
    )  # the unconfirmed policy never became last-known-good


def test_confirmed_apply_stays(fl: FaultLab, tmp_path: Path) -> None:
    """`confirm` before the deadline keeps the new rules and makes them last-known-good."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    _apply(fl, "new", state, "--confirm", str(DEADLINE))
    done = fl.run("confirm", "--state-dir", str(state))
    assert done.returncode == 0 and done.stdout.startswith("confirmed"), done.stderr
    time.sleep(PAST_DEADLINE)
    assert fl.in_force() == "new"
    good = StateDir(state).read_last_known_good()
    assert good is not None and good.policy_path == str(fl.policy("new"))


def test_confirm_with_nothing_pending_exits_one(fl: FaultLab, tmp_path: Path) -> None:
    """`confirm` with no pending apply: exit 1, one line."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    done = fl.run("confirm", "--state-dir", str(state))
    assert done.returncode == 1 and done.stderr == "nothing awaits confirmation\n"


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill-9"])
def test_revert_outlives_the_killed_caller(fl: FaultLab, tmp_path: Path, sig: int) -> None:
    """The caller's whole process group is hung up or killed: the revert still comes."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    argv = portguard_argv(
        "apply",
        str(fl.policy("new")),
        "--yes",
        "--state-dir",
        str(state),
        "--confirm",
        str(DEADLINE),
    )
    caller = subprocess.Popen(
        ["ip", "netns", "exec", fl.lab.host.name, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a login shell's job would be
    )
    assert caller.stdout is not None
    for line in caller.stdout:
        if "come back at" in line:
            break
    os.killpg(caller.pid, sig)
    caller.communicate(timeout=30)
    assert fl.in_force() == "new"
    assert _wait_for(fl, "old", PAST_DEADLINE) == "old"


def test_status_shows_the_pending_deadline(fl: FaultLab, tmp_path: Path) -> None:
    """While a confirmation is pending, status names its deadline; then it is gone."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    _apply(fl, "new", state, "--confirm", "60")
    status = fl.run("status", "--state-dir", str(state))
    assert "awaiting confirmation: the previous rules come back at" in status.stdout
    assert fl.run("confirm", "--state-dir", str(state)).returncode == 0
    assert "awaiting confirmation" not in fl.run("status", "--state-dir", str(state)).stdout


def test_plain_apply_ends_a_pending_confirmation(fl: FaultLab, tmp_path: Path) -> None:
    """A plain apply during the window is a new decision: nothing is reverted later."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    _apply(fl, "new", state, "--confirm", str(DEADLINE))
    done = fl.run("apply", str(fl.policy("refused")), "--yes", "--state-dir", str(state))
    assert done.returncode == 0 and "ends the pending confirmation" in done.stderr
    time.sleep(PAST_DEADLINE)
    assert fl.in_force() == "refused"


def test_reboot_inside_the_window_puts_the_previous_rules_back(
    fl: FaultLab, tmp_path: Path
) -> None:
    """The reverter died with the machine: `apply --boot` reverts instead of applying."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    _apply(fl, "new", state, "--confirm", "600")
    pending = json.loads((state / "confirm.json").read_text())
    os.kill(pending["reverter_pid"], signal.SIGKILL)  # gone with the reboot
    fl.reset()  # a fresh boot: an empty ruleset
    boot = fl.run("apply", str(fl.policy("new")), "--boot", "--state-dir", str(state))
    assert boot.returncode == 1 and "was never confirmed" in boot.stderr, boot.stderr
    assert fl.in_force() == "old"
    assert not (state / "confirm.json").exists()
    again = fl.run("apply", str(fl.policy("new")), "--boot", "--state-dir", str(state))
    assert again.returncode == 0, again.stderr  # the next boot applies the file as usual
    assert fl.in_force() == "new"
