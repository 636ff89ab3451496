"""Runtime bans in the live table's `ban4` / `ban6` sets: list, add, remove, carry over.

Bans are kernel state, not policy: `portguard ban` adds an element (with a timeout, if given)
to a set the rules already use, so it takes effect at once with no reload of any rule. The
elements go in over netlink (backends/ban_netlink.py): libnftables would first fetch every
element of every set in the table. The
elements are read from the kernel's stateful listing of the two sets (the stateless one has
no `expires`); comments are already reduced by `safe_comment`, so they hold no quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

from portguard.backends.ban_netlink import ElementChange, send_element_changes, suits
from portguard.backends.nftables import NO_SUCH_OBJECT, KernelRefused, NftKernel, refused
from portguard.errors import PortguardError
from portguard.model import Network
from portguard.policy.networks import subnet_of
from portguard.render.nft_table import PERSISTENT_SETS, TABLE_REF, NftTable

__all__ = [
    "Ban",
    "BanError",
    "NotBanned",
    "add_ban",
    "duration_seconds",
    "parse_ban_elements",
    "read_bans",
    "readd_bans",
    "remove_ban",
    "set_for",
]

ELEMENTS = re.compile(r"elements = \{(.*?)\}", re.DOTALL)
ELEMENT = re.compile(
    r"\s*(?P<net>[0-9A-Fa-f:./]+)"
    r"(?: timeout (?P<timeout>[0-9dhms]+))?"
    r"(?: expires (?P<expires>[0-9dhms]+))?"
    r'(?: comment "(?P<comment>[^"]*)")?\s*(?:,|\Z)'
)
DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


class BanError(PortguardError):
    """A ban or unban that cannot be done (no table, not banned, bad duration)."""


class NotBanned(BanError):
    """The network to unban is not banned (never was, or its ban expired)."""


@dataclass(frozen=True)
class Ban:
    """One banned network: its timeout and the time left (None: until unbanned), comment."""

    network: Network
    timeout_ms: int | None
    expires_ms: int | None
    comment: str | None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form for `bans --format json`."""
        return {
            "address": str(self.network),
            "timeout_seconds": None if self.timeout_ms is None else self.timeout_ms / 1000,
            "expires_seconds": None if self.expires_ms is None else self.expires_ms / 1000,
            "comment": self.comment,
        }


def set_for(network: Network) -> str:
    """The ban set of `network`'s family."""
    return PERSISTENT_SETS[0] if isinstance(network, IPv4Network) else PERSISTENT_SETS[1]


def duration_seconds(text: str) -> int:
    """A duration as nft writes it ("90s", "1h30m", "2d", "600") in whole seconds (>= 1)."""
    stripped = text.strip()
    if stripped.isdigit():
        seconds = int(stripped)
    else:
        parts = DURATION_PART.findall(stripped)
        if not parts or "".join(n + u for n, u in parts) != stripped:
            raise BanError(f"'{text}' is not a duration (examples: 600, 90s, 10m, 1h30m, 7d)")
        seconds = sum(int(n) * UNIT_MS[u] for n, u in parts) // 1000
    if not 1 <= seconds <= 10 * 365 * 86400:
        raise BanError(f"duration '{text}' must be between 1 second and 10 years")
    return seconds


def _ms_of(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * 1000


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    return sum(int(n) * UNIT_MS[u] for n, u in DURATION_PART.findall(text))


def parse_ban_elements(listing: str) -> tuple[Ban, ...]:
    """Pure: the bans in the stateful listing of one ban set."""
    bans: list[Ban] = []
    for block in ELEMENTS.findall(listing):
        for match in ELEMENT.finditer(" ".join(block.split())):
            if not match.group("net"):
                continue
            bans.append(
                Ban(
                    network=ip_network(match.group("net"), strict=False),
                    timeout_ms=_ms(match.group("timeout")),
                    expires_ms=_ms(match.group("expires")),
                    comment=match.group("comment"),
                )
            )
    return tuple(bans)


def read_bans(kernel: NftKernel) -> tuple[Ban, ...] | None:
    """Every live ban (None when the table or its ban sets are absent)."""
    bans: list[Ban] = []
    for name in PERSISTENT_SETS:
        rc, output, error = kernel.handle.cmd(f"list set {TABLE_REF} {name}")
        if rc != 0:
            if NO_SUCH_OBJECT in str(error):
                return None
            raise refused(f"list set {TABLE_REF} {name}", str(error))
        bans.extend(parse_ban_elements(str(output)))
    return tuple(bans)


def _element(ban: Ban | Network, timeout_s: int | None = None, comment: str | None = None) -> str:
    if isinstance(ban, Ban):
        net, comment = ban.network, ban.comment
        timeout_s = None if ban.expires_ms is None else max(1, ban.expires_ms // 1000)
    else:
        net = ban
    text = str(net)
    if timeout_s is not None:
        text += f" timeout {timeout_s}s"
    if comment:
        text += f' comment "{comment}"'
    return text


def add_ban(
    kernel: NftKernel, network: Network, timeout_s: int | None, comment: str | None
) -> tuple[Network, ...]:
    """Ban `network` (again: its timeout and comment are replaced), in one transaction.

    Bans inside `network` are folded into it (an interval set refuses overlaps) and are
    returned; a network already inside a wider ban is refused with a BanError naming it.
    """
    live = read_bans(kernel)
    if live is None:
        raise BanError("no portguard table with ban sets is loaded; run 'portguard apply' first")
    wider = [b.network for b in live if subnet_of(network, b.network) and b.network != network]
    if wider:
        raise BanError(f"{network} is already banned as part of {wider[0]}")
    folded = tuple(
        b.network for b in live if subnet_of(b.network, network) and b.network != network
    )
    name = set_for(network)
    if not folded and suits(network, comment):  # the common case, without libnftables
        family_empty = not any(b.network.version == network.version for b in live)
        send_element_changes(
            (  # add (a no-op if present), delete, add: as the nft batch below
                ElementChange(True, name, network, zero_end=family_empty),
                ElementChange(False, name, network),
                ElementChange(True, name, network, _ms_of(timeout_s), comment),
            )
        )
        return folded
    if folded:
        # nft checks an added interval against the committed set, so the narrower bans must
        # go in a transaction of their own first (their addresses are unbanned for that gap).
        kernel.run("".join(f"delete element {TABLE_REF} {name} {{ {n} }}\n" for n in folded))
    lines = [
        # add (a no-op if present), delete, add: replaces an existing ban's timeout atomically
        f"add element {TABLE_REF} {name} {{ {network} }}",
        f"delete element {TABLE_REF} {name} {{ {network} }}",
        f"add element {TABLE_REF} {name} {{ {_element(network, timeout_s, comment)} }}",
    ]
    kernel.run("\n".join(lines) + "\n")
    return folded


def remove_ban(kernel: NftKernel, network: Network) -> None:
    """Lift the ban on exactly `network`; BanError when it is not banned."""
    live = read_bans(kernel)
    if live is None:
        raise BanError("no portguard table with ban sets is loaded; nothing is banned")
    if not any(b.network == network for b in live):
        holder = [b.network for b in live if subnet_of(network, b.network)]
        hint = f" (it is inside the ban on {holder[0]}; unban that)" if holder else ""
        raise NotBanned(f"{network} is not banned{hint}")
    try:
        if suits(network, None):
            send_element_changes((ElementChange(False, set_for(network), network),))
        else:
            kernel.run(f"delete element {TABLE_REF} {set_for(network)} {{ {network} }}\n")
    except KernelRefused as refusal:  # expired between the read and the delete
        raise NotBanned(f"{network} is not banned ({refusal.kernel_message})") from None


def readd_bans(kernel: NftKernel, table: NftTable) -> str:
    """`add element` lines that put the live bans back after a whole-table replace."""
    if not any(s.name in PERSISTENT_SETS for s in table.sets):
        return ""
    try:
        live = read_bans(kernel)
    except KernelRefused:
        return ""  # a table that cannot even list its sets: nothing to carry
    if not live:
        return ""
    return "".join(
        f"add element {TABLE_REF} {set_for(b.network)} {{ {_element(b)} }}\n" for b in live
    )
