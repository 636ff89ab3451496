"""Lint for `deny:`: a deny that swallows an allow entry's `from`, or that denies everyone."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from portguard.model import LintWarning, Policy
from portguard.policy.networks import (
    NetworkParts,
    NetworkSet,
    in_family,
    network_parts,
    union,
)

__all__ = ["deny_warnings"]

IPV4 = 4


def deny_warnings(policy: Policy) -> Iterator[tuple[str, LintWarning]]:
    """("deny", warning) for each allow entry whose every source is denied, and deny-all items."""
    if not policy.deny:
        return
    for item in policy.deny:
        if any(prefix == 0 for _, _, prefix in network_parts(item.networks)):
            family = "IPv4" if in_family(item.networks, IPV4) else "IPv6"
            message = f"deny '{item.name}' drops every {family} source's new connections"
            yield "deny", LintWarning(item.location, message)
    index = _DenyIndex(union([item.networks for item in policy.deny]))
    for rule in policy.allow:
        if not rule.sources:
            continue
        if all(index.covers(*parts) for parts in network_parts(rule.sources)):
            denied_by = _first_item(policy, next(network_parts(rule.sources)))
            message = (
                f"every source in 'from' ({', '.join(rule.source_names)}) is denied"
                f"{denied_by}: this entry allows no one"
            )
            yield "deny", LintWarning(rule.location, message)


class _DenyIndex:
    """The denied networks collapsed per family, as sorted integer intervals: containment by
    one bisection."""

    def __init__(self, denied: NetworkSet) -> None:
        self._starts = {f: [s for _, s, _ in network_parts(denied.family(f))] for f in (4, 6)}
        self._ends = {
            f: [_end(v, s, p) for v, s, p in network_parts(denied.family(f))] for f in (4, 6)
        }

    def covers(self, version: int, start: int, prefix: int) -> bool:
        """Whether the network (version, start, prefix) lies wholly inside one denied network."""
        at = bisect_right(self._starts[version], start) - 1
        return at >= 0 and _end(version, start, prefix) <= self._ends[version][at]


def _first_item(policy: Policy, parts: NetworkParts) -> str:
    """` by deny 'NAME' (line N)` for the first deny item that holds `parts`, else ""."""
    version, start, prefix = parts
    end = _end(version, start, prefix)
    for item in policy.deny:
        for v, s, p in network_parts(item.networks):
            if v == version and s <= start and end <= _end(v, s, p):
                return f" by deny '{item.name}' (line {item.location.line})"
    return ""


def _end(version: int, start: int, prefix: int) -> int:
    """The last address of the network (version, start, prefix)."""
    return start + (1 << ((32 if version == IPV4 else 128) - prefix)) - 1
