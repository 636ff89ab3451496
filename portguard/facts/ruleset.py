"""The live `inet portguard` table as a fact: its listing, marker, sets, and leftovers.

Read once per command through the command's one nftables handle, as the kernel's stateless
listing: drift compares it, and the objects, the set references and the marker are read
from it (never from portguard's own rendered text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from portguard.backends.nftables import NftKernel
from portguard.render.nft_table import CHAIN_NAME, FORWARD_CHAIN, GENERATIONS, MARKER_PREFIX

SET_REFERENCE = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")

__all__ = ["LiveTable", "listing_lines", "parse_live_table", "read_live_table"]


@dataclass(frozen=True)
class LiveTable:
    """What the kernel holds as `table inet portguard`, read once."""

    # The stateless text listing, meter elements and leftover sets cut out; None when not
    # listed because the ruleset generation proves it the applied record's (facts/proven.py).
    listing: str | None
    marker: str | None  # the digest the first rule's comment names, if it carries one
    set_names: tuple[str, ...]  # every set, leftovers included, sorted
    leftover_sets: tuple[str, ...]  # generation sets no rule uses (an interrupted apply's)
    foreign: bool  # objects portguard never makes (maps, other chains, flowtables ...)
    has_chain: bool = True  # False: only sets (a first apply killed before its rules went in)
    has_forward: bool = False  # the forward chain (published ports) is there

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
    listing = kernel.listing()
    return None if listing is None else parse_live_table(listing)


def parse_live_table(listing: str) -> LiveTable:
    """Pure: the fact from the kernel's stateless text listing of the table.

    nft lists each object of the table as a tab-indented block and each rule on one line.
    A rule's trailing `comment "..."` is cut off before its `@set` references are read, so
    comment text cannot name a set. (Not the JSON listing: libnftables 1.0.6 prints garbage,
    and corrupts its heap, for a table with `flags owner`.)
    """
    set_names: list[str] = []
    referenced: set[str] = set()
    marker: str | None = None
    foreign = has_chain = has_forward = seen_rule = False
    block: tuple[str, str] | None = None
    for depth, text, opened in listing_lines(listing):
        if opened is not None:
            block = opened
            kind = opened[0]
            if kind == "set":
                set_names.append(block[1])
            elif kind == "chain" and block[1] == CHAIN_NAME:
                has_chain = True
            elif kind == "chain" and block[1] == FORWARD_CHAIN:
                has_forward = True
            else:
                foreign = True  # a map, counter, flowtable ... portguard never makes
        elif depth == 1 and text.startswith("flags "):
            foreign = True  # table flags (owner, dormant): not a table portguard made
        elif depth == 2 and block is not None and block[0] == "chain" and text:
            if text.startswith("type ") or text.startswith("policy "):
                continue
            rule, comment = _split_comment(text)
            referenced.update(SET_REFERENCE.findall(rule))
            if block[1] != CHAIN_NAME:
                continue
            if not seen_rule and comment is not None and comment.startswith(MARKER_PREFIX):
                marker = comment.removeprefix(MARKER_PREFIX)
            seen_rule = True
    leftovers = tuple(
        name
        for name in set_names
        if name not in referenced and name.endswith(GENERATIONS) and not foreign
    )
    return LiveTable(
        listing=_without_sets(listing, leftovers),
        marker=marker,
        set_names=tuple(sorted(set_names)),
        leftover_sets=leftovers,
        foreign=foreign,
        has_chain=has_chain,
        has_forward=has_forward,
    )


def listing_lines(listing: str) -> Iterator[tuple[int, str, tuple[str, str] | None]]:
    """Each line of nft's tab-indented listing: its depth, its text, and the (kind, name) of
    the table object whose block it opens (None for any other line)."""
    for line in listing.splitlines():
        depth = len(line) - len(line.lstrip("\t"))
        text = line.strip()
        opened = None
        if depth == 1 and text.endswith("{"):
            kind, _, rest = text.partition(" ")
            opened = (kind, rest.removesuffix("{").strip())
        yield depth, text, opened


def _split_comment(rule: str) -> tuple[str, str | None]:
    """A listed rule and its comment text (nft puts `comment "..."` last, without quotes in it)."""
    body, quote, rest = rule.partition(' comment "')
    if not quote or not rest.endswith('"'):
        return rule, None
    return body, rest[:-1]


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
