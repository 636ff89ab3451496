"""The rules in force and the rules a policy renders to, and the ports that change opens and closes.

For tools that show a change as before/after texts (Ansible's diff mode): both texts leave
out the rendering's comment header, which names the policy file and its entry lines, so a
policy written to another path shows no difference. `opened` and `closed` compare the new
policy with the one in force by meaning (as `portguard diff`); they are None when no known
portguard policy is in force (no table, or one changed behind portguard's back). The policy
in force is parsed again from its record (set files relative to its directory, as `show`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portguard.drift import table_in_force
from portguard.errors import PortguardError
from portguard.facts.ruleset import LiveTable
from portguard.model import Policy
from portguard.policy import parse_policy
from portguard.policy_diff import SpaceChange, diff_policies, space_change_json
from portguard.render.nft_table import NftTable
from portguard.state import Records

__all__ = ["RulesChange", "rules_change", "rules_change_json", "rules_text"]


@dataclass(frozen=True)
class RulesChange:
    """Before and after as rule texts, and the ports opened and closed (None: unknown)."""

    before: str  # the rules in force; the live listing when not a known rendering; "" none
    after: str  # the rules the new policy renders to
    opened: tuple[SpaceChange, ...] | None
    closed: tuple[SpaceChange, ...] | None


def rules_text(table: NftTable) -> str:
    """The table's nft text without the comment header (no file name, no entry lines)."""
    return "".join(line for line in table.text().splitlines(True) if not line.startswith("#"))


def rules_change(
    policy: Policy, rendering: NftTable, records: Records, live: LiveTable | None
) -> RulesChange:
    """What replacing the live table with `rendering` (of `policy`) changes."""
    in_force = table_in_force(records, live)
    if in_force is None:
        listed = live is not None and (live.has_chain or live.foreign)
        before = (live.listing or "") if live is not None and listed else ""
        return RulesChange(before, rules_text(rendering), None, None)
    old = _policy_of(records, in_force)
    after = rules_text(rendering)
    if old is None:
        return RulesChange(rules_text(in_force), after, None, None)
    diff = diff_policies(old, policy)
    return RulesChange(rules_text(in_force), after, diff.opened, diff.closed)


def rules_change_json(change: RulesChange) -> dict[str, object]:
    """The change as plan JSON's keys `rules` ({"before", "after"}), `opened` and `closed`."""

    def spaces(items: tuple[SpaceChange, ...] | None) -> list[dict[str, object]] | None:
        return None if items is None else [space_change_json(c) for c in items]

    return {
        "rules": {"before": change.before, "after": change.after},
        "opened": spaces(change.opened),
        "closed": spaces(change.closed),
    }


def _policy_of(records: Records, table: NftTable) -> Policy | None:
    """The recorded policy whose rendering `table` is, parsed again (None: none or unusable)."""
    for path, text, recorded in _recorded(records):
        if recorded is table:
            try:
                return parse_policy(text, path, base_dir=Path(path).parent).policy
            except PortguardError:
                return None
    return None


def _recorded(records: Records) -> list[tuple[str, str, NftTable | None]]:
    found: list[tuple[str, str, NftTable | None]] = []
    if records.applied is not None:
        applied = records.applied
        found.append((applied.policy_path, applied.policy_text, applied.table))
    if records.pending is not None:
        pending = records.pending
        found.append((pending.policy_path, pending.policy_text, pending.table))
    return found
