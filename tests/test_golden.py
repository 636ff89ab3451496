"""Golden scenarios: each tests/scenarios/NN-name/policy.yaml renders exactly to expected.nft.

Set PORTGUARD_UPDATE_GOLDEN=1 to rewrite the expected.nft files from the current renderer
instead of comparing (then read every diff: a golden file is a claim about the policy).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portguard.policy import load_policy
from portguard.render.nftables import render_nftables

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SCENARIO_DIRS = sorted(p for p in SCENARIOS.iterdir() if (p / "policy.yaml").is_file())
UPDATE = os.environ.get("PORTGUARD_UPDATE_GOLDEN") == "1"


def rendered(scenario: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The scenario's policy rendered from inside its directory (so the header path is stable)."""
    monkeypatch.chdir(scenario)
    return render_nftables(load_policy("policy.yaml").policy)


def test_there_are_scenarios() -> None:
    """The scenario directory is not empty (a glob typo would make every check vacuous)."""
    assert len(SCENARIO_DIRS) >= 10


@pytest.mark.parametrize("scenario", SCENARIO_DIRS, ids=lambda p: p.name)
def test_scenario_renders_as_golden(scenario: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """render_nftables(load_policy(policy.yaml)) equals expected.nft byte for byte."""
    text = rendered(scenario, monkeypatch)
    golden = scenario / "expected.nft"
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == text
