"""The nftables sets and rules of `deny:` and of runtime bans (`portguard ban`).

Bans live in `ban4` / `ban6` (flags interval,timeout; PERSISTENT_SETS: never generation-
suffixed, never replaced by a swap) and drop every packet of a banned source, established
ones included, first thing in the input chain. `deny:` sets are ordinary policy sets whose
sources' new packets are dropped right after the established/related accept, before ICMP
and every allow entry.
"""

from __future__ import annotations

from types import MappingProxyType

from portguard.model import Policy
from portguard.policy.networks import NetworkSet, network_texts, union
from portguard.render.nft_table import NftRule, NftSet, SetRef

__all__ = ["BAN_SETS", "ban_rules", "ban_sets", "deny_rules", "deny_sets"]

FAMILY_MATCH = MappingProxyType({4: "ip", 6: "ip6"})
FAMILY_TYPE = MappingProxyType({4: "ipv4_addr", 6: "ipv6_addr"})
BAN_SETS = MappingProxyType({4: "ban4", 6: "ban6"})


def ban_sets() -> list[NftSet]:
    """The two (empty as rendered) ban sets; `portguard ban` adds elements with timeouts."""
    return [NftSet(BAN_SETS[f], FAMILY_TYPE[f], "interval,timeout") for f in (4, 6)]


def ban_rules() -> list[NftRule]:
    """Drop (and count) every packet from a banned source."""
    return [
        NftRule((f"{FAMILY_MATCH[f]} saddr ", SetRef(BAN_SETS[f]), " counter drop")) for f in (4, 6)
    ]


def deny_sets(policy: Policy) -> list[NftSet]:
    """`deny4` / `deny6`: the denied networks of each family, collapsed (none: no set)."""
    return [
        NftSet(f"deny{family}", FAMILY_TYPE[family], "interval", tuple(network_texts(networks)))
        for family, networks in _denied(policy)
    ]


def deny_rules(policy: Policy) -> list[NftRule]:
    """Drop (and count) the new packets of denied sources."""
    return [
        NftRule((f"{FAMILY_MATCH[family]} saddr ", SetRef(f"deny{family}"), " counter drop"))
        for family, _ in _denied(policy)
    ]


def _denied(policy: Policy) -> list[tuple[int, NetworkSet]]:
    """The denied networks per family, merged so that no two overlap (interval sets)."""
    denied = union([item.networks for item in policy.deny])
    per_family = ((f, denied.family(f)) for f in (4, 6))
    return [(family, nets) for family, nets in per_family if nets]
