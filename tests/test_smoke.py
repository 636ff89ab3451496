"""The bundled policies load and render; the CLI answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.cli import main
from portguard.policy import load_policy
from portguard.render.nftables import render_nftables

POLICIES = sorted((Path(__file__).resolve().parent.parent / "policies").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_bundled_policy_loads_without_warnings(path: Path) -> None:
    """Every bundled policy is valid and lint-clean."""
    loaded = load_policy(path)
    assert loaded.warnings == ()
    assert "table inet portguard {" in render_nftables(loaded.policy)


def test_check_without_kernel_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --no-kernel` on a good policy says ok and exits 0."""
    assert main(["check", "--no-kernel", str(POLICIES[0])]) == 0
    assert ": ok (" in capsys.readouterr().out
