"""Fail closed, proven with packets: kill -9 at every step, real record failures, refusals.

After each fault the scanner's probes must show exactly the policy in force before or the
one being applied (never a mix, never a port of a refused policy), `status` must say what
is live, and the next command must succeed. Faults are real: SIGKILL, a full or read-only
tmpfs as the state dir, damaged record files, and the kernel refusing a batch because the
table was changed under a paused apply.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from tests.faultlab import FaultLab, fill_up, remount, tmpfs

pytestmark = pytest.mark.netns

BEFORE_SWAP = (
    "locked",
    "writing pending.json",
    "pending-written",
    "leftovers-deleted",
    "sets-filled",
)
AFTER_SWAP = (
    "rules-swapped",
    "writing applied.json",
    "recorded",
    "writing last-known-good.json",
    "promoted",
)
REMOVE_BEFORE = ("locked", "writing pending.json", "pending-written")
REMOVE_AFTER = ("rules-swapped", "writing removed.json", "recorded")
RANDOM_KILLS = 14
BIG_SOURCES = 20_000


def _apply(fl: FaultLab, name: str, state: Path, *extra: str) -> None:
    done = fl.run("apply", str(fl.policy(name)), "--yes", "--state-dir", str(state), *extra)
    assert done.returncode == 0, done.stderr


def _errors(stderr: str) -> list[str]:
    """The stderr lines that are not warnings (the lockout guard warns of cut-off listeners)."""
    return [line for line in stderr.splitlines() if not line.startswith("portguard: warning:")]


def _status(fl: FaultLab, state: Path, *extra: str) -> tuple[int, str]:
    done = fl.run("status", "--check", "--state-dir", str(state), *extra)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, done.stdout


def _assert_recovers(fl: FaultLab, state: Path, name: str = "new") -> None:
    """The next apply of `name` succeeds, leaves one generation of sets, and is in sync."""
    _apply(fl, name, state)
    assert fl.in_force() == name
    suffixes = {s[-3:] for s in fl.generation_sets()}
    assert len(suffixes) == 1, fl.generation_sets()
    code, out = _status(fl, state, "--policy", str(fl.policy(name)))
    assert code == 0 and "did not complete" not in out and "unused set" not in out, out


@pytest.mark.parametrize("step", BEFORE_SWAP + AFTER_SWAP)
@pytest.mark.parametrize("before", ["none", "old"])
def test_kill_at_each_step_of_apply(fl: FaultLab, tmp_path: Path, before: str, step: str) -> None:
    """kill -9 at `step`: the old rules before the swap, the new ones after; status says so."""
    state = tmp_path / "state"
    if before == "old":
        _apply(fl, "old", state)
    paused = fl.run_paused(step, "apply", str(fl.policy("new")), "--yes", "--state-dir", str(state))
    paused.kill()
    expected = before if step in BEFORE_SWAP else "new"
    assert fl.in_force() == expected
    code, out = _status(fl, state)
    if expected == "none":
        assert code == 3 and out.startswith("table inet portguard: absent"), out
    else:
        assert code == 0 and out.startswith("table inet portguard: in-sync"), out
    if step in ("rules-swapped", "writing applied.json"):
        assert "interrupted before its record was written" in out, out
    if step == "sets-filled":
        assert "unused set(s) left by an interrupted apply" in out, out
    _assert_recovers(fl, state)


@pytest.mark.parametrize("step", BEFORE_SWAP + AFTER_SWAP)
def test_kill_at_each_step_of_boot(fl: FaultLab, tmp_path: Path, step: str) -> None:
    """kill -9 of `apply --boot` at `step` over no table: no table or the new rules; rerun works."""
    state = tmp_path / "state"
    argv = ("apply", str(fl.policy("new")), "--boot", "--state-dir", str(state))
    fl.run_paused(step, *argv).kill()
    assert fl.in_force() == ("none" if step in BEFORE_SWAP else "new")
    again = fl.run(*argv)
    assert again.returncode == 0, again.stderr
    assert fl.in_force() == "new"
    assert _status(fl, state)[0] == 0


@pytest.mark.parametrize("step", REMOVE_BEFORE + REMOVE_AFTER)
def test_kill_at_each_step_of_remove(fl: FaultLab, tmp_path: Path, step: str) -> None:
    """kill -9 of `remove` at `step`: the old rules, or none; status tells which; rerun works."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    fl.run_paused(step, "remove", "--yes", "--state-dir", str(state)).kill()
    expected = "old" if step in REMOVE_BEFORE else "none"
    assert fl.in_force() == expected
    code, out = _status(fl, state)
    assert code == (0 if expected == "old" else 3), out
    again = fl.run("remove", "--yes", "--state-dir", str(state))
    assert again.returncode == 0, again.stderr
    assert fl.in_force() == "none"
    assert _status(fl, state)[1].startswith("table inet portguard: absent\nremoved by portguard")


def test_kill_at_random_moments_of_a_big_apply(fl: FaultLab, tmp_path: Path) -> None:
    """kill -9 at random times during applies with 20k-source sets: always old or new whole."""
    state = tmp_path / "state"
    sources = "\n".join(f"10.{n // 256}.{n % 256}.0/24" for n in range(BIG_SOURCES))
    (fl.policy_dir / "big.txt").write_text(sources + "\n")
    big = fl.policy_dir / "big-new.yaml"
    big.write_text(
        "version: 1\nsets:\n  big: {file: big.txt}\nallow:\n  - port: 80\n"
        "  - port: 8080\n    from: [192.0.2.0/24, '2001:db8:7::/64']\n"
        "  - port: 7777\n    from: ['@big']\n"
    )
    _apply(fl, "old", state / "timing")
    started = time.monotonic()
    fl.run("apply", str(big), "--yes", "--state-dir", str(state / "timing"))
    duration = time.monotonic() - started  # one whole apply, start-up included
    rng = random.Random(9)
    seen: list[str] = []
    for round_number in range(RANDOM_KILLS):
        fl.reset()
        round_state = state / str(round_number)
        _apply(fl, "old", round_state)
        how = fl.run_killed_after(
            rng.uniform(0.05, duration), "apply", str(big), "--yes", "--state-dir", str(round_state)
        )
        outcome = fl.in_force()
        seen.append(f"{how}:{outcome}")
        assert outcome in ("old", "new"), (round_number, how, outcome)
        assert _status(fl, round_state)[0] == 0
    assert fl.run("apply", str(big), "--yes", "--state-dir", str(state / "0")).returncode == 0
    assert fl.in_force() == "new"
    print("random kills ended at:", seen)
    assert sum(how.startswith("killed") for how in seen) >= RANDOM_KILLS // 2, seen


def test_read_only_state_dir_changes_nothing(fl: FaultLab, tmp_path: Path) -> None:
    """A read-only state dir: apply fails in one line before the kernel is touched."""
    with tmpfs(tmp_path / "state") as state:
        _apply(fl, "old", state)
        remount(state, "ro")
        try:
            done = fl.run("apply", str(fl.policy("new")), "--yes", "--state-dir", str(state))
            assert done.returncode == 1 and len(_errors(done.stderr)) == 1, done.stderr
            assert "Read-only file system" in done.stderr
            assert fl.in_force() == "old"
            assert _status(fl, state, "--policy", str(fl.policy("old")))[0] == 0
        finally:
            remount(state, "rw")
        _assert_recovers(fl, state)


def test_full_state_dir_changes_nothing(fl: FaultLab, tmp_path: Path) -> None:
    """A full state dir: apply fails in one line (ENOSPC), the old rules stay."""
    with tmpfs(tmp_path / "state") as state:
        _apply(fl, "old", state)
        fill_up(state)
        done = fl.run("apply", str(fl.policy("new")), "--yes", "--state-dir", str(state))
        assert done.returncode == 1 and "No space left on device" in done.stderr, done.stderr
        assert fl.in_force() == "old"
        (state / "filler").unlink()
        _assert_recovers(fl, state)


@pytest.mark.parametrize("fault", ["full", "read-only"])
@pytest.mark.parametrize("before", ["none", "old"])
def test_record_failure_after_the_swap_puts_the_old_rules_back(
    fl: FaultLab, tmp_path: Path, before: str, fault: str
) -> None:
    """The state dir breaks between kernel and record: the previous rules come back."""
    with tmpfs(tmp_path / "state") as state:
        if before == "old":
            _apply(fl, "old", state)
        paused = fl.run_paused(
            "rules-swapped", "apply", str(fl.policy("new")), "--yes", "--state-dir", str(state)
        )
        assert fl.in_force() == "new"  # the swap went through; the record is next
        fill_up(state) if fault == "full" else remount(state, "ro")
        try:
            done = paused.resume()
            assert done.returncode == 1, done.stderr
            assert "the previous rules were put back" in done.stderr, done.stderr
            assert len(_errors(done.stderr)) == 1
            assert fl.in_force() == before
        finally:
            remount(state, "rw")
            (state / "filler").unlink(missing_ok=True)
        if before == "old":
            assert _status(fl, state, "--policy", str(fl.policy("old")))[0] == 0
        _assert_recovers(fl, state)


def test_boot_over_no_table_keeps_rules_it_cannot_record(fl: FaultLab, tmp_path: Path) -> None:
    """At boot a read-only state dir does not leave the host open: the policy goes in."""
    with tmpfs(tmp_path / "state") as state:
        remount(state, "ro")
        try:
            done = fl.run("apply", str(fl.policy("new")), "--boot", "--state-dir", str(state))
            assert done.returncode == 0, done.stderr
            assert "applying without a record" in done.stderr
            assert fl.in_force() == "new"
        finally:
            remount(state, "rw")


def test_refused_policy_never_opens_its_ports(fl: FaultLab, tmp_path: Path) -> None:
    """Issue 9's sequence: refusal, leftovers of a killed apply, then a record failure.

    Before the redesign the restore merged the leftover generation into the old sets and
    ports of the refused policy answered. Now every probe shows exactly the old policy.
    """
    with tmpfs(tmp_path / "state") as state:
        _apply(fl, "old", state)
        refused = fl.policy("refused")
        paused = fl.run_paused(
            "sets-filled", "apply", str(refused), "--yes", "--state-dir", str(state)
        )
        new_sets = [s for s in fl.generation_sets() if s.endswith("_g1")]
        assert new_sets, fl.generation_sets()
        fl.nft("delete", "set", "inet", "portguard", new_sets[0])
        done = paused.resume()
        assert done.returncode == 1 and "nftables refused" in done.stderr, done.stderr
        assert fl.in_force() == "old"
        assert all(s.endswith("_g0") for s in fl.generation_sets()), fl.generation_sets()
        fl.run_paused(
            "sets-filled", "apply", str(refused), "--yes", "--state-dir", str(state)
        ).kill()
        assert any(s.endswith("_g1") for s in fl.generation_sets())  # leftovers
        paused = fl.run_paused(
            "rules-swapped", "apply", str(fl.policy("new")), "--yes", "--state-dir", str(state)
        )
        remount(state, "ro")
        try:
            assert paused.resume().returncode == 1
        finally:
            remount(state, "rw")
        assert fl.in_force() == "old"
        _assert_recovers(fl, state)


def test_kernel_refuses_the_fill(fl: FaultLab, tmp_path: Path) -> None:
    """A set of the new generation's name but another type appears: fill refused, old stays."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    paused = fl.run_paused(
        "leftovers-deleted", "apply", str(fl.policy("new")), "--yes", "--state-dir", str(state)
    )
    fl.nft("add", "set", "inet", "portguard", "open_tcp_g1", "{ type ipv4_addr; }")
    done = paused.resume()
    assert done.returncode == 1 and "File exists" in done.stderr, done.stderr
    assert fl.in_force() == "old"
    code, out = _status(fl, state)
    assert code == 0 and "did not complete" not in out, out  # the intent was cleared
    _assert_recovers(fl, state)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "{not json",
        lambda text: json.dumps({**json.loads(text), "listing_sha256": "0" * 64}),
        lambda text: "",
    ],
    ids=["truncated", "invalid-json", "wrong-hash", "empty"],
)
def test_damaged_applied_record_is_a_warning(fl: FaultLab, tmp_path: Path, damage: object) -> None:
    """A damaged applied.json: apply and --boot warn and go on; status says drifted."""
    assert callable(damage)
    state = tmp_path / "state"
    _apply(fl, "old", state)
    record = state / "applied.json"
    record.write_text(damage(record.read_text()))
    code, out = _status(fl, state)
    assert code == 3 and out.startswith("table inet portguard: drifted"), out
    done = fl.run("apply", str(fl.policy("new")), "--yes", "--state-dir", str(state))
    assert done.returncode == 0 and "damaged record" in done.stderr, done.stderr
    assert fl.in_force() == "new"
    record.write_text(damage(record.read_text()))
    broken = fl.policy_dir / "broken.yaml"
    broken.write_text("version: 1\nallow:\n  - port: 99999\n")
    fl.reset()
    boot = fl.run("apply", str(broken), "--boot", "--state-dir", str(state))
    assert boot.returncode == 1 and "last-known-good ruleset" in boot.stderr, boot.stderr
    assert fl.in_force() == "new"  # last-known-good, although applied.json is damaged


def test_damaged_last_known_good_at_boot_leaves_rules_as_they_are(
    fl: FaultLab, tmp_path: Path
) -> None:
    """Broken policy and damaged last-known-good: exit 1, one reason, the rules untouched."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    (state / "last-known-good.json").write_text("{")
    broken = fl.policy_dir / "broken.yaml"
    broken.write_text("version: 1\nallow:\n  - port: 99999\n")
    boot = fl.run("apply", str(broken), "--boot", "--state-dir", str(state))
    assert boot.returncode == 1 and "rules left as they are" in boot.stderr, boot.stderr
    assert fl.in_force() == "old"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge-number", "missing"])
def test_boot_falls_back_on_any_unreadable_policy(fl: FaultLab, tmp_path: Path, kind: str) -> None:
    """A FIFO, /dev/zero, a 5,000-digit port or no file: --boot puts last-known-good in force."""
    state = tmp_path / "state"
    _apply(fl, "old", state)
    fl.reset()
    policy = tmp_path / "policy.yaml"
    if kind == "fifo":
        os.mkfifo(policy)
    elif kind == "dev-zero":
        policy.symlink_to("/dev/zero")
    elif kind == "huge-number":
        policy.write_text(f"version: 1\nallow:\n  - port: '{'9' * 5000}'\n")
    done = fl.run("apply", str(policy), "--boot", "--state-dir", str(state))
    assert done.returncode == 1, done.stderr
    assert "last-known-good ruleset" in done.stderr and "put in force instead" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert fl.in_force() == "old"


def test_status_escapes_a_newline_in_the_policy_name(fl: FaultLab, tmp_path: Path) -> None:
    """A policy file name with a newline shows as one escaped line in status."""
    state = tmp_path / "state"
    odd = fl.policy_dir / "odd\nname.yaml"
    odd.write_text(fl.policy("old").read_text())
    assert fl.run("apply", str(odd), "--yes", "--state-dir", str(state)).returncode == 0
    code, out = _status(fl, state)
    assert code == 0 and "odd\\nname.yaml" in out and "odd\nname" not in out, out
