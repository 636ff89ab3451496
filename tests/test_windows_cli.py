"""apply, status and remove on a Windows host go to Windows Firewall, never to nftables.

The host is faked in two places only: `on_windows()` answers True, and the PowerShell runner
is the recording FakeFirewall (there is no Windows here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.cli import main
from tests.windows_fake import OTHER_RULE, RDP_RULE, FakeFirewall

POLICY = "version: 1\nallow:\n  - port: [80, 443]\n  - port: 22\n    from: [192.0.2.0/24]\n"


def test_apply_then_reapply_on_windows(
    firewall: FakeFirewall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply adds the group's rules once; applying the same policy again changes nothing."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    assert main(["apply", "--yes", str(policy)]) == 0
    assert firewall.group and all(name.startswith("portguard-") for name in firewall.group)
    assert firewall.others == {OTHER_RULE, RDP_RULE}
    assert "applied as Windows Firewall generation" in capsys.readouterr().out
    scripts_after_first = len(firewall.scripts)
    assert main(["apply", "--yes", str(policy)]) == 0
    assert capsys.readouterr().out == f"{policy}: unchanged, nothing to do\n"
    assert not any("New-NetFirewallRule" in s for s in firewall.scripts[scripts_after_first:])


def test_status_and_remove_on_windows(
    firewall: FakeFirewall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --check is 0 in sync and 3 when absent; remove deletes only the group."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    assert main(["status", "--check"]) == 3
    assert main(["apply", "--yes", str(policy)]) == 0
    assert main(["status", "--check", "--policy", str(policy)]) == 0
    firewall.delete(sorted(firewall.group)[0])  # someone deletes one of our rules
    assert main(["status", "--check", "--policy", str(policy)]) == 3
    assert "missing: portguard-" in capsys.readouterr().out
    assert main(["remove", "--yes"]) == 0
    assert firewall.group == set()
    assert firewall.others == {OTHER_RULE, RDP_RULE}
    assert main(["status", "--check"]) == 3
