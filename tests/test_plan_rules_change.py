"""`plan --format json` carries `rules` (texts before/after) and the ports opened/closed.

These keys feed Ansible's diff mode (ansible/plugins/modules/policy.py); run in a throwaway
namespace against the kernel's real table.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.netns import Netns, portguard_argv

pytestmark = pytest.mark.netns

OLD = "version: 1\nallow:\n  - port: [22, 80]\n"
NEW = "version: 1\nallow:\n  - port: 22\n  - port: 8443\n    from: [198.51.100.0/24]\n"


def _plan(ns: Netns, state: Path, policy: Path) -> dict[str, object]:
    result = ns.run(
        portguard_argv("plan", str(policy), "--format", "json", "--state-dir", str(state)),
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def _rules(data: dict[str, object]) -> dict[str, str]:
    rules = data["rules"]
    assert isinstance(rules, dict)
    return rules


def test_plan_json_before_after_opened_closed(netns: Netns, tmp_path: Path) -> None:
    """Absent: before empty, opened/closed null; over OLD: 80 closed, 8443 opened from a net."""
    state = tmp_path / "state"
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD)
    new.write_text(NEW)
    first = _plan(netns, state, old)
    assert (_rules(first)["before"], first["opened"], first["closed"]) == ("", None, None)
    assert _rules(first)["after"].startswith("table inet portguard {\n")
    applied = netns.run(portguard_argv("apply", str(old), "--yes", "--state-dir", str(state)))
    assert applied.returncode == 0
    data = _plan(netns, state, new)
    assert data["opened"] == [
        {"proto": "tcp", "ports": "8443", "from": ["198.51.100.0/24"], "interface": None}
    ]
    assert data["closed"] == [{"proto": "tcp", "ports": "80", "from": ["any"], "interface": None}]
    before, after = _rules(data)["before"], _rules(data)["after"]
    assert "#" not in before + after  # no header: no file names, no entry lines
    rendered = subprocess.run(
        portguard_argv("render", str(old)), capture_output=True, text=True, check=True
    ).stdout
    assert before == "".join(ln for ln in rendered.splitlines(True) if not ln.startswith("#"))
    assert "198.51.100.0/24" in after and "198.51.100.0/24" not in before
    same = _plan(netns, state, old)
    assert (same["opened"], same["closed"]) == ([], [])
    assert _rules(same)["before"] == _rules(same)["after"] == before
