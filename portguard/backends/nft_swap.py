"""Two-phase replace of the portguard table: fill the new sets first, then swap the rules.

Why not one `delete table` + `table {...}` transaction: the kernel's interval set backends
(rbtree, pipapo) make a new set's elements visible only after the transaction's rules are
live. For that instant a new packet to an allowed port meets the new rules with empty sets
and falls to `policy drop` (measured here: 4-5 dropped SYNs in about 400 replaces; with hash
sets, 0). So the new sets go in first, under fresh names, in a transaction of their own that
no rule uses yet. The second transaction flushes the chain, loads the new rules that name
the new sets, and deletes the old sets: atomic, and every set it names is already complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from portguard.render.nftables import CHAIN_NAME, TABLE_FAMILY, TABLE_NAME

__all__ = ["SwapBatches", "TableParts", "live_objects", "split_table", "swap_batches"]

TABLE_REF = f"{TABLE_FAMILY} {TABLE_NAME}"
GENERATION_SUFFIX = re.compile(r"_g[01]\Z")
SET_REFERENCE = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
TOP_LEVEL_OBJECT = re.compile(r"^\t(\w+) (\S+) \{", re.MULTILINE)
CHAIN_HEADER = "\t\ttype filter hook input priority filter; policy drop;"


@dataclass(frozen=True)
class TableParts:
    """A rendered table cut into its set blocks (name, text) and its input chain's rules."""

    sets: tuple[tuple[str, str], ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class SwapBatches:
    """The two transactions of a replace: new sets first, then the rule swap."""

    fill_sets: str
    swap_rules: str
    new_set_names: tuple[str, ...]


def split_table(table_text: str) -> TableParts:
    """Cut portguard's rendered (or listed) table text into set blocks and chain rules."""
    sets: list[tuple[str, str]] = []
    rules: list[str] = []
    lines = table_text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        match = re.match(r"\tset (\S+) \{$", line)
        if match is not None:
            end = lines.index("\t}", index)
            sets.append((match.group(1), "\n".join(lines[index : end + 1])))
            index = end + 1
            continue
        if line == f"\tchain {CHAIN_NAME} {{":
            end = lines.index("\t}", index)
            body = [ln.strip() for ln in lines[index + 1 : end]]
            rules = [ln for ln in body if ln and not ln.startswith("type filter hook")]
            index = end + 1
            continue
        index += 1
    return TableParts(sets=tuple(sets), rules=tuple(rules))


def live_objects(listing: str | None) -> tuple[tuple[str, str], ...]:
    """The (kind, name) of each object directly inside the live table: set, chain, map ..."""
    if listing is None:
        return ()
    return tuple((kind, name) for kind, name in TOP_LEVEL_OBJECT.findall(listing))


def swap_batches(table_text: str, live_listing: str | None) -> SwapBatches | None:
    """The two-phase batches that replace the live table by `table_text`.

    None when the live table holds objects portguard never makes (maps, counters, other
    chains someone added, ...): only a whole-table replace is sure to remove those.
    """
    live = live_objects(live_listing)
    if any(kind not in ("set", "chain") for kind, _ in live) or any(
        kind == "chain" and name != CHAIN_NAME for kind, name in live
    ):
        return None
    live_sets = [name for kind, name in live if kind == "set"]
    generation = "_g1" if any(name.endswith("_g0") for name in live_sets) else "_g0"
    parts = split_table(table_text)
    renames = {name: GENERATION_SUFFIX.sub("", name) + generation for name, _ in parts.sets}
    if set(renames.values()) & set(live_sets):  # cannot happen unless both generations live
        return None
    set_blocks = [
        block.replace(f"\tset {name} {{", f"\tset {renames[name]} {{", 1)
        for name, block in parts.sets
    ]
    fill = "\n".join([f"add table {TABLE_REF}", f"table {TABLE_REF} {{", *set_blocks, "}"])
    rules = [SET_REFERENCE.sub(lambda m: "@" + renames.get(m[1], m[1]), r) for r in parts.rules]
    swap = [
        f"table {TABLE_REF} {{",
        f"\tchain {CHAIN_NAME} {{",
        CHAIN_HEADER,
        "\t}",
        "}",
        f"flush chain {TABLE_REF} {CHAIN_NAME}",
        *(f"delete set {TABLE_REF} {name}" for name in live_sets),
        f"table {TABLE_REF} {{",
        f"\tchain {CHAIN_NAME} {{",
        *(f"\t\t{rule}" for rule in rules),
        "\t}",
        "}",
    ]
    return SwapBatches(
        fill_sets=fill + "\n",
        swap_rules="\n".join(swap) + "\n",
        new_set_names=tuple(renames.values()),
    )
