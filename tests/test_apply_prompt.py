"""apply asks on a terminal only when it would change something, and "no" changes nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.netns import Netns, portguard_argv

POLICY_SSH = "version: 1\nallow:\n  - port: 22\n"
POLICY_WEB = "version: 1\nallow:\n  - port: [80, 443]\n"


def _apply_on_a_terminal(netns: Netns, policy: Path, state: Path, answer: str) -> tuple[int, str]:
    """Run apply (no --yes) with a pseudo-terminal as stdin; return exit code and output."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns.name,
                *portguard_argv("apply", str(policy), "--state-dir", str(state)),
            ],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(controller, answer.encode())
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, output


def test_unchanged_policy_does_not_prompt(netns: Netns, tmp_path: Path) -> None:
    """Re-applying the live policy on a terminal says "unchanged" without asking."""
    policy, state = tmp_path / "ssh.yaml", tmp_path / "state"
    policy.write_text(POLICY_SSH)
    netns.run(portguard_argv("apply", str(policy), "--yes", "--state-dir", str(state)))
    code, output = _apply_on_a_terminal(netns, policy, state, answer="")
    assert code == 0
    assert "?" not in output and output.endswith("unchanged, nothing to do\n")


def test_answering_no_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    """A pending change asks first; answering "n" aborts with exit 1 and the rules stay."""
    ssh, web, state = tmp_path / "ssh.yaml", tmp_path / "web.yaml", tmp_path / "state"
    ssh.write_text(POLICY_SSH)
    web.write_text(POLICY_WEB)
    netns.run(portguard_argv("apply", str(ssh), "--yes", "--state-dir", str(state)))
    before = netns.ruleset()
    code, output = _apply_on_a_terminal(netns, web, state, answer="n\n")
    assert code == 1
    assert "Replace portguard's rules with the rules of" in output
    assert "aborted" in output
    assert netns.ruleset() == before
