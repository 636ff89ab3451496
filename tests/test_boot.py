"""`apply --boot` in throwaway namespaces: a broken policy never opens the host.

Each test runs the real CLI inside namespaces it makes, and judges by real packets from a
scanner namespace: the allowed port connects, the blocked one times out.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from portguard.state import StateDir
from tests.netns import HOST_V4, Lab, Netns, lab, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, listeners, scan

pytestmark = pytest.mark.netns

ALLOWED, BLOCKED = 8080, 8081
GOOD_POLICY = f"""\
version: 1
allow:
  - port: {ALLOWED}
    comment: the one open port
"""
# Line 3, column 11: a port out of range; the loader rejects it with that location.
BROKEN_POLICY = """\
version: 1
allow:
  - port: 70000
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _boot(ns: Netns, policy: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return ns.run(
        portguard_argv("apply", "--boot", "--state-dir", str(state), *extra, str(policy)),
        check=False,
    )


def _reachability(pair: Lab) -> dict[int, str]:
    """Probe ALLOWED and BLOCKED on the host from the scanner, with listeners on both."""
    with listeners(pair.host, tcp=[ALLOWED, BLOCKED]):
        results = scan(pair.scanner, [Probe("tcp", HOST_V4, p) for p in (ALLOWED, BLOCKED)])
    return {r.probe.port: r.outcome for r in results}


def _one_portguard_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("portguard: "), stderr
    assert "\x1b" not in lines[0]  # no colour codes in the journal
    return lines[0]


def test_broken_policy_keeps_good_rules_and_fresh_boot_restores_them(
    net_lab: Lab, tmp_path: Path
) -> None:
    """A broken edit exits 1 with the good rules in force; a fresh boot gets them back."""
    state = tmp_path / "state"
    good = _write(tmp_path, "good.yaml", GOOD_POLICY)
    broken = _write(tmp_path, "broken.yaml", BROKEN_POLICY)
    with listeners(net_lab.host, tcp=[ALLOWED, BLOCKED]):
        unprotected = scan(net_lab.scanner, [Probe("tcp", HOST_V4, BLOCKED)])
    assert unprotected[0].outcome == OPEN  # the probe can tell: without rules, BLOCKED is open

    applied = _boot(net_lab.host, good, state)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == f"portguard: {good}: applied"
    assert _reachability(net_lab) == {ALLOWED: OPEN, BLOCKED: FILTERED}

    failed = _boot(net_lab.host, broken, state)
    assert failed.returncode == 1
    assert failed.stdout == ""
    line = _one_portguard_line(failed.stderr)
    assert f"{broken}:3:11: port 70000 is out of range" in line
    assert f"last-known-good ruleset ({good}," in line
    assert line.endswith("kept in force instead")
    assert _reachability(net_lab) == {ALLOWED: OPEN, BLOCKED: FILTERED}

    with lab("pgb") as fresh:
        assert "portguard" not in fresh.host.ruleset()  # a fresh boot: nothing loaded
        rebooted = _boot(fresh.host, broken, state)
        assert rebooted.returncode == 1
        assert _one_portguard_line(rebooted.stderr).endswith("put in force instead")
        assert "table inet portguard" in fresh.host.ruleset()
        assert _reachability(fresh) == {ALLOWED: OPEN, BLOCKED: FILTERED}


def test_missing_policy_on_first_boot_falls_back_to_last_known_good(
    net_lab: Lab, tmp_path: Path
) -> None:
    """No policy file at all is handled like a broken one: last-known-good goes in force."""
    state = tmp_path / "state"
    good = _write(tmp_path, "good.yaml", GOOD_POLICY)
    assert _boot(net_lab.host, good, state).returncode == 0
    with lab("pgm") as fresh:
        missing = tmp_path / "absent.yaml"
        result = _boot(fresh.host, missing, state)
        assert result.returncode == 1
        line = _one_portguard_line(result.stderr)
        assert f"{missing}: cannot read policy" in line
        assert "put in force instead" in line
        assert _reachability(fresh) == {ALLOWED: OPEN, BLOCKED: FILTERED}


@pytest.mark.parametrize("policy_text", [BROKEN_POLICY, None], ids=["broken", "missing"])
def test_no_last_known_good_leaves_rules_untouched(
    netns: Netns, tmp_path: Path, policy_text: str | None
) -> None:
    """Without last-known-good, a broken or missing policy changes nothing and exits 1."""
    netns.run(["nft", "add table inet sentinel"])
    netns.run(["nft", "add chain inet sentinel input { type filter hook input priority 0; }"])
    before = netns.ruleset()
    policy = tmp_path / "policy.yaml"
    if policy_text is not None:
        policy.write_text(policy_text, encoding="utf-8")
    result = _boot(netns, policy, tmp_path / "state")
    assert result.returncode == 1
    line = _one_portguard_line(result.stderr)
    assert f"no last-known-good ruleset in {tmp_path / 'state'}" in line
    assert line.endswith("rules left as they are")
    assert netns.ruleset() == before


def test_boot_does_not_wait_forever_for_the_lock(net_lab: Lab, tmp_path: Path) -> None:
    """With the state lock held elsewhere, --boot gives up quickly and changes nothing."""
    state = tmp_path / "state"
    good = _write(tmp_path, "good.yaml", GOOD_POLICY)
    before = net_lab.host.ruleset()
    with StateDir(state).lock(None):
        result = _boot(net_lab.host, good, state, "--lock-timeout", "0.3")
    assert result.returncode == 1
    line = _one_portguard_line(result.stderr)
    assert "still holds the lock" in line
    assert line.endswith("rules left as they are")
    assert net_lab.host.ruleset() == before


def test_kernel_refusal_tries_last_known_good_and_leaves_rules(
    net_lab: Lab, netns: Netns, tmp_path: Path
) -> None:
    """When the kernel refuses (another process owns the table), nothing changes; exit 1."""
    state = tmp_path / "state"
    good = _write(tmp_path, "good.yaml", GOOD_POLICY)
    assert _boot(net_lab.host, good, state).returncode == 0  # a last-known-good exists
    owner = subprocess.Popen(
        ["ip", "netns", "exec", netns.name, "nft", "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert owner.stdin is not None
    try:
        owner.stdin.write(
            "add table inet portguard { flags owner; }\n"
            "add chain inet portguard input { type filter hook input priority 0; }\n"
        )
        owner.stdin.flush()
        for _ in range(100):
            if "flags owner" in netns.ruleset():
                break
            time.sleep(0.05)
        before = netns.ruleset()
        assert "flags owner" in before
        result = _boot(netns, good, state)
        assert netns.ruleset() == before
    finally:
        owner.stdin.close()
        owner.wait(timeout=10)
    assert result.returncode == 1
    line = _one_portguard_line(result.stderr)
    assert f"{good}: nftables refused the ruleset" in line
    assert "last-known-good not applied either: nftables refused" in line
    assert line.endswith("rules left as they are")
