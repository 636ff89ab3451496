"""The live `inet portguard` table as a fact: its listing, marker, sets, and leftovers.

Read once per command through the command's one nftables handle. The objects come from the
terse JSON listing (names and rule expressions, no elements), so a set reference is known
from the rule's structure, never guessed from text; the text listing is what drift compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from portguard.backends.nftables import NftKernel
from portguard.render.nft_table import CHAIN_NAME, GENERATIONS, MARKER_PREFIX

__all__ = ["LiveTable", "parse_live_table", "read_live_table"]


@dataclass(frozen=True)
class LiveTable:
    """What the kernel holds as `table inet portguard`, read once."""

    listing: str  # stateless text listing, meter elements and leftover sets cut out
    marker: str | None  # the digest the first rule's comment names, if it carries one
    set_names: tuple[str, ...]  # every set, leftovers included
    leftover_sets: tuple[str, ...]  # generation sets no rule uses (an interrupted apply's)
    foreign: bool  # objects portguard never makes (maps, other chains, flowtables ...)
    has_chain: bool = True  # False: only sets (a first apply killed before its rules went in)

    @property
    def used_generation(self) -> str | None:
        """The generation suffix of the sets the rules use (None if they use none)."""
        used = [n for n in self.set_names if n not in self.leftover_sets]
        for suffix in GENERATIONS:
            if any(name.endswith(suffix) for name in used):
                return suffix
        return None


def read_live_table(kernel: NftKernel) -> LiveTable | None:
    """The live table through `kernel` (None when there is no portguard table)."""
    objects = kernel.objects_json()
    listing = kernel.listing()
    if objects is None or listing is None:
        return None
    return parse_live_table(objects, listing)


def parse_live_table(objects_json: str, listing: str) -> LiveTable:
    """Pure: the fact from the terse JSON listing and the stateless text listing."""
    items = json.loads(objects_json).get("nftables", [])
    set_names: list[str] = []
    referenced: set[str] = set()
    marker: str | None = None
    foreign = False
    has_chain = False
    seen_rule = False
    for item in items:
        kind, body = next(iter(item.items()))
        if kind in ("metainfo", "table"):
            continue
        if kind == "set":
            set_names.append(str(body["name"]))
        elif kind == "chain":
            has_chain = True
            foreign = foreign or body.get("name") != CHAIN_NAME
        elif kind == "rule":
            referenced.update(_set_references(body.get("expr", [])))
            comment = body.get("comment")
            if not seen_rule and isinstance(comment, str) and comment.startswith(MARKER_PREFIX):
                marker = comment.removeprefix(MARKER_PREFIX)
            seen_rule = True
            foreign = foreign or body.get("chain") != CHAIN_NAME
        else:
            foreign = True
    leftovers = tuple(
        name
        for name in set_names
        if name not in referenced and name.endswith(GENERATIONS) and not foreign
    )
    return LiveTable(
        listing=_without_sets(listing, leftovers),
        marker=marker,
        set_names=tuple(set_names),
        leftover_sets=leftovers,
        foreign=foreign,
        has_chain=has_chain,
    )


def _set_references(node: object) -> Iterator[str]:
    """Every `@name` string in a rule's JSON expressions (comments are not expressions)."""
    if isinstance(node, str):
        if node.startswith("@"):
            yield node[1:]
    elif isinstance(node, list):
        for child in node:
            yield from _set_references(child)
    elif isinstance(node, dict):
        for child in node.values():
            yield from _set_references(child)


def _without_sets(listing: str, names: tuple[str, ...]) -> str:
    """The kernel's listing without the blocks of the sets `names` (as nft lists them).

    nft ends each set block with a blank line; that line goes with the block.
    """
    if not names:
        return listing
    starts = {f"\tset {name} {{" for name in names}
    kept: list[str] = []
    skipping = after_block = False
    for line in listing.splitlines(keepends=True):
        text = line.rstrip("\n")
        if skipping:
            skipping = text != "\t}"
            after_block = not skipping
            continue
        if after_block and not text:
            after_block = False
            continue
        after_block = False
        if text in starts:
            skipping = True
            continue
        kept.append(line)
    return "".join(kept)
