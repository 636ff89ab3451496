"""The pre-commit hook checks policy files only, all of them in one portguard process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from portguard.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _hook() -> dict[str, Any]:
    """The portguard-check hook definition."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    (hook,) = [h for h in hooks if h["id"] == "portguard-check"]
    return dict(hook)


@pytest.mark.parametrize(
    ("path", "matched"),
    [
        ("policies/web-server.yaml", True),
        ("hosts/db1/policies/db.yml", True),
        ("tests/ansible/policy.yml", False),  # an Ansible playbook, not a policy
        ("firewall/web.portguard.yaml", True),
        ("portguard.yaml", True),
        (".pre-commit-config.yaml", False),
        (".github/workflows/ci.yml", False),
        ("docker-compose.yaml", False),
        ("ansible/playbook.yml", False),
    ],
)
def test_hook_files_are_policy_files_only(path: str, matched: bool) -> None:
    """`files:` picks policy files and leaves other YAML (pre-commit's own config) alone."""
    assert bool(re.search(_hook()["files"], path)) is matched


def test_hook_runs_one_process_for_all_files() -> None:
    """The entry is a plain `portguard check` (no shell loop) and pre-commit may not split it."""
    hook = _hook()
    assert hook["entry"] == "portguard check --no-kernel"
    assert hook["require_serial"] is True


def test_check_takes_many_files_and_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check A B C: one ok line per good file, one error line per bad one, exit 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nallow:\n  - port: 0\n", encoding="utf-8")
    good = str(ROOT / "policies/default.yaml")
    assert main(["check", "--no-kernel", good, str(bad), good]) == 1
    said = capsys.readouterr()
    assert said.out.count(": ok (") == 2
    assert said.err.splitlines() == [f"{bad}:3:11: port 0 is out of range 1-65535"]
