"""The live table without listing it: proven by the ruleset generation, or listed and settled.

Listing a table through libnftables 1.0.6 fetches every set element (65-82 s and 1.3 GB for
a million), so portguard lists only when it must. An apply whose own transactions were the
only ones committed (the generation moved by exactly their number) records that generation
instead of a listing; while the generation is still the live one, nothing at all has
committed in the namespace since, so the live table is exactly the recorded rendering and
its facts are read from the record (`proven_live`).

Once anything else has committed (another table, a ban, a hand edit), the table is listed
again and must be compared with the listing the record would have held. That listing is
reproduced by nft itself: the recorded rendering is loaded into a private network namespace
and listed there (facts/reference.py), never touching the host's rules.
"""

from __future__ import annotations

from dataclasses import replace

from portguard.facts.generation import RulesetGeneration
from portguard.facts.reference import reference_listing
from portguard.facts.ruleset import LiveTable
from portguard.state import AppliedState, Records

__all__ = ["proven_live", "record_live", "settle_records"]


def record_live(applied: AppliedState) -> LiveTable:
    """The facts of a live table that is exactly `applied`'s rendering (no leftovers)."""
    return LiveTable(
        listing=applied.listing,
        marker=applied.digest,
        set_names=tuple(sorted(applied.table.set_names(applied.suffix))),
        leftover_sets=(),
        foreign=False,
        has_chain=True,
        has_forward=bool(applied.table.forward),
    )


def proven_live(records: Records, generation: RulesetGeneration | None) -> LiveTable | None:
    """The live table from the applied record when `generation` proves it unchanged, else None.

    Not while a change is pending: an interrupted command may have committed since.
    """
    applied = records.applied
    if applied is None or records.pending is not None or generation is None:
        return None
    if applied.generation != generation:
        return None
    return record_live(applied)


def settle_records(
    records: Records, live: LiveTable | None, settled: Records | None = None
) -> Records:
    """`records` whose applied record holds a listing to compare a listed `live` table with.

    A record proven by generation has none; it is taken from `settled` (the same record,
    settled earlier in this command) or reproduced here. It stays None when no private
    namespace can be made: then the live table cannot be shown to be the record.
    """
    applied = records.applied
    if applied is None or applied.listing is not None or live is None or live.listing is None:
        return records  # nothing to compare, or `live` is proven the record (not listed)
    earlier = settled.applied if settled is not None else None
    same = earlier is not None and replace(earlier, listing=None) == applied
    if earlier is not None and earlier.listing is not None and same:  # settled before
        return replace(records, applied=earlier)
    listing = reference_listing(applied.table, applied.suffix)
    if listing is None:
        return records
    return replace(records, applied=replace(applied, listing=listing))
