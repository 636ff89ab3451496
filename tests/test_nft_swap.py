"""The two-phase replace's batches from the typed table and the live facts; the renderer's text."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.backends.nft_swap import swap_batches
from portguard.facts.ruleset import LiveTable
from portguard.policy import parse_policy
from portguard.render.nft_table import (
    PERSISTENT_SETS,
    NftRule,
    NftSet,
    NftTable,
    SetRef,
    table_from_json,
)
from portguard.render.nftables import render_table
from tests.netns import Netns, portguard_argv

POLICY = (
    "version: 1\nallow:\n  - port: [22, 80]\n  - port: 8000-8100\n    interface: eth1\n"
    "  - port: 443\n    from: [192.0.2.0/24]\n"
)


def _table(text: str = POLICY) -> NftTable:
    return render_table(parse_policy(text, "p.yaml", base_dir=Path(".")).policy)


def _live(*sets: str, leftovers: tuple[str, ...] = (), foreign: bool = False) -> LiveTable:
    return LiveTable("listing", None, (*sets, *leftovers), leftovers, foreign)


def test_first_apply_uses_generation_zero_and_fills_sets_first() -> None:
    """With no live table, sets are made as *_g0 with no rule, then the rules name them."""
    batches = swap_batches(_table(), None)
    assert batches is not None
    # The ban sets are declared unsuffixed and are never among the sets an undo deletes.
    assert batches.new_set_names == ("open_tcp_g0", "from4_tcp_g0", "e2_ports_g0", "blocked_g0")
    assert "\tset ban4 {" in batches.fill_sets
    assert "chain" not in batches.fill_sets and "\tset open_tcp_g0 {" in batches.fill_sets
    assert "@open_tcp_g0" in batches.swap_rules and "@open_tcp " not in batches.swap_rules
    assert "delete set" not in batches.swap_rules
    assert "\tset " not in batches.swap_rules
    assert batches.drop_leftovers is None


def test_replace_alternates_generation_and_deletes_old_sets_after_the_flush() -> None:
    """Over a *_g0 table the new sets are *_g1, and the old ones go after the chain flush."""
    batches = swap_batches(_table(), _live("open_tcp_g0"))
    assert batches is not None
    assert "open_tcp_g1" in batches.new_set_names
    lines = batches.swap_rules.splitlines()
    flush = lines.index("flush chain inet portguard input")
    assert lines.index("delete set inet portguard open_tcp_g0") > flush
    assert "\t\ttcp dport @open_tcp_g1 counter accept" in lines


def test_leftover_sets_are_deleted_first_and_do_not_decide_the_generation() -> None:
    """Unused *_g1 sets of a killed apply over a *_g0 table: deleted, then *_g1 is filled."""
    batches = swap_batches(_table(), _live("open_tcp_g0", leftovers=("open_tcp_g1", "x_g1")))
    assert batches is not None
    assert batches.drop_leftovers == (
        "delete set inet portguard open_tcp_g1\ndelete set inet portguard x_g1\n"
    )
    assert "open_tcp_g1" in batches.new_set_names
    assert "delete set inet portguard open_tcp_g1" not in batches.swap_rules


def test_a_rollback_prefers_the_old_generation() -> None:
    """`prefer` picks a free generation (so an old rendering gets its old names back)."""
    over_g1 = swap_batches(_table(), _live("open_tcp_g1"), prefer="_g0")
    assert over_g1 is not None and "open_tcp_g0" in over_g1.new_set_names
    over_g0 = swap_batches(_table(), _live("open_tcp_g0"), prefer="_g0")
    assert over_g0 is not None and "open_tcp_g1" in over_g0.new_set_names


def test_foreign_objects_force_a_whole_table_replace() -> None:
    """A hand-made chain or map in our table: no two-phase batches (replace it whole)."""
    assert swap_batches(_table(), _live("open_tcp_g0", foreign=True)) is None


COMMENTS = st.text(alphabet=st.sampled_from("@abe1_ports_g0{}\"';\n#$ -"), min_size=1, max_size=200)


def _commented(comment: str) -> NftTable:
    """A limited, interface-bound entry carrying `comment` (JSON quoting is valid YAML)."""
    policy = (
        "version: 1\nallow:\n  - port: 8000-8100\n    interface: eth1\n    limit: 5/minute\n"
        f"    comment: {json.dumps(comment)}\n  - port: 22\n    from: [192.0.2.0/24]\n"
    )
    return render_table(parse_policy(policy, "p.yaml", base_dir=Path(".")).policy)


@settings(max_examples=60, deadline=None)
@given(comment=COMMENTS, generation=st.sampled_from(["_g0", "_g1"]))
def test_generation_text_is_the_rendering_but_for_set_names(comment: str, generation: str) -> None:
    """text(g) is render's text with each set name but the ban sets' suffixed; no comment
    changes a rule."""
    table = _commented(comment)
    expected_lines = []
    for line in table.text().splitlines(keepends=True):
        rule, quote, comment = line.partition(' comment "')
        if not line.startswith("#"):  # header comments keep their text
            names = [n for n in table.set_names() if n not in PERSISTENT_SETS]
            for name in sorted(names, key=len, reverse=True):
                rule = rule.replace(f"set {name} {{", f"set {name}{generation} {{")
                rule = rule.replace(f"@{name} ", f"@{name}{generation} ")
        expected_lines.append(rule + quote + comment)
    expected = "".join(expected_lines)
    # Suffixes touch set declarations and references only, never the comment's text.
    assert table.text(generation) == expected
    # Whatever the comment says, every rule has the same parts as with a plain comment.
    assert [r.parts for r in table.rules] == [r.parts for r in _commented("x").rules]
    assert table_from_json(table.to_json()) == table
    assert table_from_json(table.to_json()).digest == table.digest


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
    assert "tcp dport @open_tcp_g0 counter" in ruleset  # the whole-table form, generation 0


def test_recorded_elements_read_back_in_both_forms() -> None:
    """Records keep a set's elements as one text (a line each); older records' lists and
    empty sets read back to the same table."""
    table = NftTable(
        header=("h",),
        sets=(
            NftSet("open_tcp", "inet_service", "interval", ("22", "80-90")),
            NftSet("from4_tcp_1", "ipv4_addr", "interval", ()),
        ),
        rules=(NftRule(("tcp dport ", SetRef("open_tcp"), " accept"), comment="c"),),
    )
    data = table.to_json()
    sets = data["sets"]
    assert isinstance(sets, list) and sets[0]["elements"] == "22\n80-90"
    assert table_from_json(data) == table
    older = {
        **data,
        "sets": [
            {**s, "elements": s["elements"].split("\n") if s["elements"] else []} for s in sets
        ],
    }
    assert table_from_json(older) == table
