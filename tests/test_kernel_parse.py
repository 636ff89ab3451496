"""The kernel's own nftables parser accepts every rendered scenario and bundled policy.

Everything here runs inside throwaway network namespaces; nothing touches this machine's rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings

from portguard.model import Policy
from portguard.policy import load_policy
from portguard.render.nftables import render_nftables, render_table, safe_comment, transaction
from tests.netns import Netns, can_make_netns, portguard_argv, throwaway_netns
from tests.test_verdict import policies

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("*/policy.yaml"))
BUNDLED = sorted((ROOT / "policies").glob("*.yaml"))
INJECTION = ROOT / "tests" / "scenarios" / "13-comment-injection" / "policy.yaml"

# Run in a child inside the namespace: `check` with a renderer that writes an impossible port.
BAD_PORT_HOOK = """
import sys
import portguard.render.nftables as renderer  # check_cmd imports it when it dry-runs
from portguard.cli import main
real = renderer.render_nftables
renderer.render_nftables = lambda policy: real(policy).replace("\\t\\t\\t22,", "\\t\\t\\t70000,")
raise SystemExit(main(["check", sys.argv[1]]))
"""

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def shared_netns() -> Iterator[Netns]:
    """One throwaway namespace for the read-only dry runs of this module."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make a throwaway network namespace")
    with throwaway_netns("pgk") as ns:
        yield ns


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("policy", SCENARIOS + BUNDLED, ids=_label)
def test_kernel_dry_run_accepts(policy: Path, shared_netns: Netns) -> None:
    """`portguard check POLICY` in a namespace: the kernel parses the rendered table, exit 0."""
    result = shared_netns.run(portguard_argv("check", str(policy)), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("kernel dry run passed")
    assert shared_netns.ruleset() == ""  # a dry run leaves nothing behind


def _chain_rule_lines(table_text: str, hook: str = "input") -> list[str]:
    lines = table_text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith(f"\t\ttype filter hook {hook}")
    )
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_comment_injection_cannot_add_rules(netns: Netns) -> None:
    """Applied for real, the injection policy yields exactly its own rules and one table."""
    policy = load_policy(INJECTION).policy
    table_text = render_nftables(policy)
    netns.run(["nft", "-f", "-"], input_text=transaction(table_text))
    listing = json.loads(netns.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]
    tables = [(o["table"]["family"], o["table"]["name"]) for o in listing if "table" in o]
    chains = [o["chain"] for o in listing if "chain" in o]
    rules = [o["rule"] for o in listing if "rule" in o]
    assert tables == [("inet", "portguard")]
    assert [(c["name"], c["hook"], c["policy"]) for c in chains] == [
        ("input", "input", "drop"),
        ("forward", "forward", "accept"),
    ]
    input_rules, forward_rules = (_chain_rule_lines(table_text, h) for h in ("input", "forward"))
    # + the two ban rules, the blocked-port counter and the default-verdict counter each
    assert (len(input_rules), len(forward_rules)) == (15, 13)
    assert len(rules) == len(input_rules) + len(forward_rules)
    entry_comments = [
        safe_comment(rule.comment)
        for rule in policy.allow
        if rule.comment and (rule.interface or rule.limit)
        for _ in range(2 if rule.limit else 1)
    ]
    expected_comments = [render_table(policy).marker, *entry_comments, *entry_comments]
    assert [r["comment"] for r in rules if "comment" in r] == expected_comments
    for comment in expected_comments:
        assert not set(comment) & set('"\n{}\\`$')
    # No rule accepts unconditionally: each accept carries at least one match.
    for rule in rules:
        verdicts = [e for e in rule["expr"] if "accept" in e]
        assert not verdicts or len(rule["expr"]) > 1


def test_kernel_refusal_is_one_line_exit_1(shared_netns: Netns) -> None:
    """When the kernel refuses the rendered rules, `check` exits 1 with one line, no traceback."""
    scenario = ROOT / "tests" / "scenarios" / "01-service-names" / "policy.yaml"
    argv = [portguard_argv()[0], "-c", BAD_PORT_HOOK, str(scenario)]
    result = shared_netns.run(argv, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("nftables refused the ruleset: Service out of range")
    assert shared_netns.ruleset() == ""


def test_kernel_refusal_names_the_offending_line(shared_netns: Netns) -> None:
    """The refusal line quotes the rendered line that holds the bad port."""
    scenario = ROOT / "tests" / "scenarios" / "01-service-names" / "policy.yaml"
    argv = [portguard_argv()[0], "-c", BAD_PORT_HOOK, str(scenario)]
    result = shared_netns.run(argv, check=False)
    assert result.stderr.rstrip().endswith(": 70000,")


@settings(max_examples=60, deadline=None)
@given(policy=policies(max_rules=8))
def test_kernel_accepts_random_policies(policy: Policy, shared_netns: Netns) -> None:
    """Any policy the model can hold renders to a table the kernel's parser accepts."""
    text = transaction(render_nftables(policy))
    result = shared_netns.run(["nft", "-c", "-f", "-"], input_text=text, check=False)
    assert result.returncode == 0, result.stderr
