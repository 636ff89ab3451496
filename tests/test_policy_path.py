"""The same policy under another path is not a change: plan, status, apply, records and diff.

Configuration management writes the policy to its own place (or plans a temporary copy in
check mode); only what the policy says may decide whether anything changes, never where the
file lies or how it is named. Runs in a throwaway namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.netns import Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY = (
    "# first copy\nversion: 1\ndefault: drop\nallow:\n"
    "  - port: 22\n    from: [192.0.2.0/24]\n    comment: admins\n  - port: [80, 443]\n"
)
OTHER = "version: 1\nallow:\n  - port: 8080\n"


def _pg(ns: Netns, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(portguard_argv(*args, "--state-dir", str(state)), check=False, timeout=120)


def _copies(tmp_path: Path) -> tuple[Path, Path]:
    first = tmp_path / "etc" / "policy.yaml"
    second = tmp_path / "elsewhere" / "deeper" / "copy-of-it.yml"
    for path in (first, second):
        path.parent.mkdir(parents=True)
    first.write_text(POLICY)
    # The same policy, differently laid out: other comments, blank lines, another file name.
    second.write_text("\n# a copy made by a deployment tool\n" + POLICY.replace("# first copy", ""))
    return first, second


def test_another_path_plans_no_change(netns: Netns, tmp_path: Path) -> None:
    """After applying one copy, plan/status of the other copy say in-sync, exit 0."""
    first, second = _copies(tmp_path)
    state = tmp_path / "state"
    assert _pg(netns, state, "apply", str(first), "--yes").returncode == 0
    planned = _pg(netns, state, "plan", str(second), "--format", "json", "--detailed-exitcode")
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert (data["changes"], data["ruleset"]["state"], data["ruleset"]["diff"]) == (
        False,
        "in-sync",
        "",
    )
    status = _pg(netns, state, "status", "--check", "--policy", str(second))
    assert status.returncode == 0, status.stdout
    assert status.stdout.splitlines()[0] == "table inet portguard: in-sync"
    relative = netns.run(
        [
            "env",
            "-C",
            str(second.parent),
            *portguard_argv("plan", second.name, "--detailed-exitcode", "--state-dir", str(state)),
        ],
        check=False,
        timeout=120,
    )
    assert relative.returncode == 0, relative.stdout + relative.stderr


def test_another_path_applies_nothing(netns: Netns, tmp_path: Path) -> None:
    """Applying the other copy leaves the kernel's table and the records as they were."""
    first, second = _copies(tmp_path)
    state = tmp_path / "state"
    assert _pg(netns, state, "apply", str(first), "--yes").returncode == 0
    before = netns.ruleset()
    history = _pg(netns, state, "history").stdout
    again = _pg(netns, state, "apply", str(second), "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{second}: unchanged, nothing to do"
    assert netns.ruleset() == before
    assert _pg(netns, state, "history").stdout == history
    with_confirm = _pg(netns, state, "apply", str(second), "--yes", "--confirm", "60")
    assert with_confirm.returncode == 0, with_confirm.stderr
    pending = _pg(netns, state, "confirm")
    assert (pending.returncode, pending.stderr.strip()) == (1, "nothing awaits confirmation")
    # A real change is still one: the comparison did not stop looking at the rules.
    other = tmp_path / "elsewhere" / "other.yaml"
    other.write_text(OTHER)
    changed = _pg(netns, state, "plan", str(other), "--detailed-exitcode")
    assert changed.returncode == 2, changed.stdout + changed.stderr


def test_offline_diff_ignores_the_path(tmp_path: Path) -> None:
    """`diff` of the two copies reports no change: exit 0, changed false, no ruleset diff."""
    first, second = _copies(tmp_path)
    result = subprocess.run(
        portguard_argv("diff", str(first), str(second), "--format", "json"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["changed"], data["opened"], data["closed"], data["ruleset_diff"]) == (
        False,
        [],
        [],
        "",
    )
