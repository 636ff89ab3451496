"""The two-phase replace's batches: new sets under the other generation's names, then a swap."""

from __future__ import annotations

from pathlib import Path

from portguard.backends.nft_swap import live_objects, split_table, swap_batches
from portguard.policy import parse_policy
from portguard.render.nftables import render_nftables
from tests.netns import Netns, portguard_argv

POLICY = (
    "version: 1\nallow:\n  - port: [22, 80]\n  - port: 8000-8100\n    interface: eth1\n"
    "  - port: 443\n    from: [192.0.2.0/24]\n"
)
LIVE_G0 = """table inet portguard {
\tset open_tcp_g0 {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 22 }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\ttcp dport @open_tcp_g0 accept
\t}
}
"""


def _rendered() -> str:
    return render_nftables(parse_policy(POLICY, "p.yaml", base_dir=Path(".")).policy)


def test_split_finds_every_set_and_rule() -> None:
    """The rendered table splits into its named sets and its chain rules, nothing else."""
    parts = split_table(_rendered())
    assert [name for name, _ in parts.sets] == ["open_tcp", "from4_tcp", "e2_ports"]
    assert parts.rules[0] == 'iif "lo" accept'
    assert 'iifname "eth1" meta l4proto tcp th dport @e2_ports accept' in parts.rules
    assert not any(rule.startswith("type filter hook") for rule in parts.rules)


def test_first_apply_uses_generation_zero_and_fills_sets_first() -> None:
    """With no live table, sets are made as *_g0 with no rule, then the rules name them."""
    batches = swap_batches(_rendered(), None)
    assert batches is not None
    assert batches.new_set_names == ("open_tcp_g0", "from4_tcp_g0", "e2_ports_g0")
    assert "chain" not in batches.fill_sets and "\tset open_tcp_g0 {" in batches.fill_sets
    assert "@open_tcp_g0" in batches.swap_rules and "@open_tcp " not in batches.swap_rules
    assert "delete set" not in batches.swap_rules
    assert "\tset " not in batches.swap_rules


def test_replace_alternates_generation_and_deletes_old_sets_after_the_flush() -> None:
    """Over a *_g0 table the new sets are *_g1, and the old ones go after the chain flush."""
    batches = swap_batches(_rendered(), LIVE_G0)
    assert batches is not None
    assert "open_tcp_g1" in batches.new_set_names
    lines = batches.swap_rules.splitlines()
    flush = lines.index("flush chain inet portguard input")
    assert lines.index("delete set inet portguard open_tcp_g0") > flush
    assert "\t\ttcp dport @open_tcp_g1 accept" in lines


def test_foreign_objects_force_a_whole_table_replace() -> None:
    """A hand-made chain or map in our table: no two-phase batches (replace it whole)."""
    extra_chain = LIVE_G0.replace("\n}\n", "\n\tchain sneaky {\n\t}\n}\n")
    extra_map = LIVE_G0.replace("\n}\n", "\n\tmap m {\n\t\ttype ipv4_addr : verdict\n\t}\n}\n")
    assert live_objects(extra_chain)[-1] == ("chain", "sneaky")
    assert swap_batches(_rendered(), extra_chain) is None
    assert swap_batches(_rendered(), extra_map) is None


def test_apply_over_a_hand_added_chain_replaces_the_whole_table(
    netns: Netns, tmp_path: Path
) -> None:
    """Drift outside the input chain (a chain someone added) is removed by the next apply."""
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", str(tmp_path / "state"))
    assert netns.run(argv).returncode == 0
    netns.run(["nft", "add", "chain", "inet", "portguard", "sneaky"])
    repaired = netns.run(argv)
    assert "drifted" in repaired.stdout
    ruleset = netns.ruleset()
    assert "sneaky" not in ruleset, ruleset
    assert "tcp dport @open_tcp accept" in ruleset  # the whole-table form: canonical names
