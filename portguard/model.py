"""The policy as typed, frozen values: what the loader produces and every later stage reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from portguard.errors import Location

__all__ = [
    "AllowRule",
    "DefaultVerdict",
    "DenySource",
    "IcmpMode",
    "Limit",
    "LintWarning",
    "ListeningSocket",
    "Network",
    "Policy",
    "PortRange",
    "Proto",
    "RateUnit",
]

Network = IPv4Network | IPv6Network

MAX_PORT = 65535


class Proto(StrEnum):
    """A transport protocol an allow entry can name."""

    TCP = "tcp"
    UDP = "udp"


class DefaultVerdict(StrEnum):
    """What happens to inbound traffic no rule accepts."""

    DROP = "drop"
    REJECT = "reject"


class IcmpMode(StrEnum):
    """Which ICMP / ICMPv6 messages are accepted (DESIGN §3)."""

    ESSENTIAL = "essential"
    ALL = "all"
    NONE = "none"


class ForwardedMode(StrEnum):
    """What happens to new connections this host DNATs elsewhere (published ports)."""

    FILTER = "filter"  # the allow-list applies, on the original destination port
    IGNORE = "ignore"  # portguard leaves forwarded traffic alone


class RateUnit(StrEnum):
    """The period of a `limit`."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def seconds(self) -> int:
        """Length of the period in seconds."""
        return {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[self.value]


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive range of ports, first <= last, both in 1..65535."""

    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def overlaps(self, other: PortRange) -> bool:
        """Whether the two ranges share at least one port."""
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Limit:
    """At most `count` new connections per `unit`, per source address."""

    count: int
    unit: RateUnit

    def __str__(self) -> str:
        return f"{self.count}/{self.unit.value}"


@dataclass(frozen=True)
class AllowRule:
    """One `allow:` entry: which traffic it accepts, and where it was written."""

    ports: tuple[PortRange, ...]
    protos: tuple[Proto, ...]
    sources: Sequence[Network] | None  # None: from anywhere; collapsed (a NetworkSet)
    source_names: tuple[str, ...]  # the `from` items as written ("@office", "10.0.0.0/8")
    interface: str | None
    limit: Limit | None
    comment: str | None
    service: str | None
    location: Location
    log: bool = False  # log this entry's accepted new connections (NFLOG, `portguard log`)

    def ports_text(self) -> str:
        """The ports as a short string: "22", "80,443", "8000-8100"."""
        return ",".join(str(r) for r in self.ports)


@dataclass(frozen=True)
class DenySource:
    """One `deny:` item: the sources whose new connections are dropped on every port."""

    name: str  # as written: "203.0.113.0/24", "@attackers", "file:blocklist.txt"
    networks: Sequence[Network]  # collapsed (a NetworkSet, or one network)
    location: Location


@dataclass(frozen=True)
class Policy:
    """A whole, validated policy file."""

    path: str
    version: int
    description: str | None
    default: DefaultVerdict
    icmp: IcmpMode
    log: bool
    sets: tuple[tuple[str, Sequence[Network]], ...]  # each collapsed (a NetworkSet)
    allow: tuple[AllowRule, ...]
    forwarded: ForwardedMode = ForwardedMode.FILTER
    deny: tuple[DenySource, ...] = ()

    def denied(self) -> tuple[Network, ...]:
        """Every denied network, as the deny items list them (may overlap)."""
        return tuple(net for item in self.deny for net in item.networks)


@dataclass(frozen=True)
class LintWarning:
    """A legal but suspicious construct; reported, never fatal."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: warning: {self.message}"


@dataclass(frozen=True)
class ListeningSocket:
    """A TCP listener or bound UDP socket on this host, and the program that holds it."""

    proto: Proto
    address: IPv4Address | IPv6Address  # the bound address; 0.0.0.0 or :: for any
    port: int
    pid: int | None  # None where the owner is not visible
    process: str | None
    v6only: bool = False  # IPv6 socket with IPV6_V6ONLY: `::` then takes no IPv4 (Linux only)

    @property
    def exposed(self) -> bool:
        """Reachable from other hosts: not bound to a loopback address only."""
        return not self.address.is_loopback
