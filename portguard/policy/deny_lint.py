"""Lint for `deny:`: a deny that swallows an allow entry's `from`, or that denies everyone."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from portguard.model import LintWarning, Network, Policy
from portguard.policy.networks import collapse, subnet_of

__all__ = ["deny_warnings"]


def deny_warnings(policy: Policy) -> Iterator[tuple[str, LintWarning]]:
    """("deny", warning) for each allow entry whose every source is denied, and deny-all items."""
    if not policy.deny:
        return
    for item in policy.deny:
        if any(net.prefixlen == 0 for net in item.networks):
            family = "IPv4" if any(n.version == 4 for n in item.networks) else "IPv6"
            message = f"deny '{item.name}' drops every {family} source's new connections"
            yield "deny", LintWarning(item.location, message)
    index = _DenyIndex(policy.denied())
    for rule in policy.allow:
        if not rule.sources:
            continue
        if all(index.covers(net) for net in rule.sources):
            denied_by = index.first_item(policy, rule.sources[0])
            message = (
                f"every source in 'from' ({', '.join(rule.source_names)}) is denied"
                f"{denied_by}: this entry allows no one"
            )
            yield "deny", LintWarning(rule.location, message)


class _DenyIndex:
    """The denied networks collapsed per family and sorted: containment by one bisection."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        collapsed = collapse(networks)
        self._nets = {f: [n for n in collapsed if n.version == f] for f in (4, 6)}
        self._starts = {f: [int(n.network_address) for n in nets] for f, nets in self._nets.items()}

    def covers(self, net: Network) -> bool:
        """Whether `net` lies wholly inside one denied network."""
        nets = self._nets[net.version]
        at = bisect_right(self._starts[net.version], int(net.network_address)) - 1
        return at >= 0 and int(net.broadcast_address) <= int(nets[at].broadcast_address)

    @staticmethod
    def first_item(policy: Policy, net: Network) -> str:
        """` by deny 'NAME' (line N)` for the first deny item that holds `net`, else ""."""
        for item in policy.deny:
            if any(subnet_of(net, d) for d in item.networks):
                return f" by deny '{item.name}' (line {item.location.line})"
        return ""
