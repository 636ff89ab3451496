"""Pure: what an applied record enforces, in human terms (for `portguard show`).

The record keeps the policy text that was applied; it is parsed again here (set files are
read again, relative to the policy's directory) to name every allow entry as written. When
that fails (a set file moved, a services entry gone), the view says why and lists the
rendered table's sets instead, which are exactly what the kernel was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portguard.errors import PortguardError
from portguard.model import AllowRule
from portguard.policy import parse_policy
from portguard.render.nft_table import NftTable

__all__ = ["AllowView", "PolicyView", "RenderedSet", "policy_view"]

MAX_ERROR = 300


@dataclass(frozen=True)
class AllowView:
    """One allow entry: protocols ("tcp", "tcp,udp"), ports, sources (None: anywhere), ..."""

    proto: str
    ports: str
    sources: tuple[str, ...] | None
    interface: str | None
    limit: str | None
    comment: str | None
    service: str | None
    line: int

    def text(self) -> str:
        """One line: "tcp 22 (ssh) from 192.0.2.0/24 on eth0, limit 6/minute "admins" [line 4]"."""
        words = [self.proto, self.ports]
        if self.service:
            words.append(f"({self.service})")
        words.append("from " + (", ".join(self.sources) if self.sources else "anywhere"))
        if self.interface:
            words.append(f"on {self.interface}")
        text = " ".join(words)
        if self.limit:
            text += f", limit {self.limit} per source"
        if self.comment:
            text += f' "{self.comment}"'
        return f"{text} [line {self.line}]"

    def to_json(self) -> dict[str, object]:
        """The entry as `show --format json` writes it."""
        return {
            "proto": self.proto,
            "ports": self.ports,
            "from": None if self.sources is None else list(self.sources),
            "interface": self.interface,
            "limit": self.limit,
            "comment": self.comment,
            "service": self.service,
            "line": self.line,
        }


@dataclass(frozen=True)
class RenderedSet:
    """A set of the rendered table: its name, type and number of elements."""

    name: str
    kind: str
    elements: int


@dataclass(frozen=True)
class PolicyView:
    """The applied policy's settings and allow entries, or why they could not be read."""

    default: str | None
    icmp: str | None
    log: bool | None
    description: str | None
    allow: tuple[AllowView, ...]
    named_sets: tuple[tuple[str, int], ...]  # the policy's `sets:` and their sizes
    rendered_sets: tuple[RenderedSet, ...]  # only when the policy could not be parsed again
    parse_error: str | None = None


def policy_view(policy_path: str, policy_text: str, table: NftTable) -> PolicyView:
    """The view of an applied policy (`table` is its rendering, used when parsing fails)."""
    try:
        loaded = parse_policy(policy_text, policy_path, base_dir=Path(policy_path).parent)
    except PortguardError as error:
        message = " ".join(str(error).split())[:MAX_ERROR]
        rendered = tuple(RenderedSet(s.name, s.kind, len(s.elements)) for s in table.sets)
        return PolicyView(None, None, None, None, (), (), rendered, message)
    policy = loaded.policy
    return PolicyView(
        default=policy.default.value,
        icmp=policy.icmp.value,
        log=policy.log,
        description=policy.description,
        allow=tuple(_allow_view(rule) for rule in policy.allow),
        named_sets=tuple((name, len(networks)) for name, networks in policy.sets),
        rendered_sets=(),
    )


def _allow_view(rule: AllowRule) -> AllowView:
    return AllowView(
        proto=",".join(p.value for p in rule.protos),
        ports=rule.ports_text(),
        sources=None if rule.sources is None else rule.source_names,
        interface=rule.interface,
        limit=None if rule.limit is None else str(rule.limit),
        comment=rule.comment,
        service=rule.service,
        line=rule.location.line,
    )
