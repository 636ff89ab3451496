"""The rendered `inet portguard` table as a typed value that writes its own nft text.

Rules name sets through `SetRef` parts, never through text, so a set can be written under a
generation suffix (`open_tcp_g1`) without re-reading any rendered text: comment text is a
plain string part and cannot become a set reference or a rule. The table's digest (of its
generation-free text) is carried by the first rule's comment, so the live table says which
rendering it is even when no record could be written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "CHAIN_HEADER",
    "CHAIN_NAME",
    "FORWARD_CHAIN",
    "FORWARD_HEADER",
    "GENERATIONS",
    "MARKER_PREFIX",
    "PERSISTENT_SETS",
    "TABLE_FAMILY",
    "TABLE_NAME",
    "TABLE_REF",
    "NftRule",
    "NftSet",
    "NftTable",
    "SetRef",
    "table_from_json",
]

TABLE_FAMILY = "inet"
TABLE_NAME = "portguard"
TABLE_REF = f"{TABLE_FAMILY} {TABLE_NAME}"
CHAIN_NAME = "input"
CHAIN_HEADER = "type filter hook input priority filter; policy drop;"
FORWARD_CHAIN = "forward"
# Priority filter, like Docker's own FORWARD chain (iptables-nft): a drop in any base chain
# is final and an accept is not, so the order between them does not matter.
FORWARD_HEADER = "type filter hook forward priority filter; policy accept;"
GENERATIONS = ("_g0", "_g1")
BLOCKED_SET = "blocked"  # dynamic: blocked new connections counted per protocol and port
MARKER_PREFIX = "portguard rendering "
# Sets whose elements are runtime state, not the policy's (`portguard ban`): never
# generation-suffixed, never deleted by a swap, their elements never part of drift.
PERSISTENT_SETS = ("ban4", "ban6")
DIGEST_CHARS = 16


@dataclass(frozen=True)
class SetRef:
    """A reference to one of the table's sets by its generation-free name."""

    name: str


@dataclass(frozen=True)
class NftSet:
    """A named set: type, flags, extra declaration lines, elements (already validated text)."""

    name: str
    kind: str
    flags: str
    elements: tuple[str, ...] = ()
    size: int | None = None
    timeout: str | None = None

    def text(self, suffix: str = "") -> str:
        """The set's block inside a table, named with `suffix`."""
        lines = [f"\tset {_named(self.name, suffix)} {{", f"\t\ttype {self.kind}"]
        if self.size is not None:
            lines.append(f"\t\tsize {self.size}")
        lines.append(f"\t\tflags {self.flags}")
        if self.timeout is not None:
            lines.append(f"\t\ttimeout {self.timeout}")
        if self.elements:
            lines.append(self._elements_block)
        lines.append("\t}")
        return "\n".join(lines)

    @cached_property
    def _elements_block(self) -> str:
        """The `elements = { ... }` lines, written once: the digest, the text and the sets
        batch all need them, and a big set has a million."""
        items = ",\n\t\t\t".join(self.elements)  # one join, no string per element
        return f"\t\telements = {{\n\t\t\t{items},\n\t\t}}"


@dataclass(frozen=True)
class NftRule:
    """A rule as text parts and set references; `comment` is already reduced to safe text."""

    parts: tuple[str | SetRef, ...]
    comment: str | None = None

    def text(self, suffix: str = "") -> str:
        """The rule's nft text, its set references written with `suffix`."""
        body = "".join(
            p if isinstance(p, str) else f"@{_named(p.name, suffix)}" for p in self.parts
        )
        return body + (f' comment "{self.comment}"' if self.comment is not None else "")

    def set_names(self) -> tuple[str, ...]:
        """The generation-free names of the sets this rule uses."""
        return tuple(p.name for p in self.parts if isinstance(p, SetRef))


@dataclass(frozen=True)
class NftTable:
    """The whole table: header comments, sets, the input chain's rules after the marker, and
    the forward chain's rules (none: no forward chain)."""

    header: tuple[str, ...]
    sets: tuple[NftSet, ...]
    rules: tuple[NftRule, ...]
    forward: tuple[NftRule, ...] = ()

    @cached_property
    def digest(self) -> str:
        """A short sha256 of the generation-free table body without the marker (its identity)."""
        body = self._body("", marker=None)
        return hashlib.sha256(body.encode()).hexdigest()[:DIGEST_CHARS]

    @property
    def marker(self) -> str:
        """The comment the first rule carries: names this rendering in the live table."""
        return MARKER_PREFIX + self.digest

    def text(self, suffix: str = "") -> str:
        """The complete nft text (header comments and table) with set names ending in `suffix`."""
        lines = [f"# {line}" for line in self.header]
        return "\n".join([*lines, self._body(suffix, marker=self.marker)]) + "\n"

    def set_names(self, suffix: str = "") -> tuple[str, ...]:
        """The names of the table's sets as written with `suffix`."""
        return tuple(_named(s.name, suffix) for s in self.sets)

    def sets_text(self, suffix: str) -> str:
        """A batch that adds the table (if absent) and every set under `suffix`, no rules."""
        blocks = [s.text(suffix) for s in self.sets]
        return "\n".join([f"add table {TABLE_REF}", f"table {TABLE_REF} {{", *blocks, "}"]) + "\n"

    def rules_text(self, suffix: str) -> str:
        """The chain blocks with every rule, their set references written with `suffix`."""
        return "\n".join([f"table {TABLE_REF} {{", *self._chains(suffix, self.marker), "}"])

    def _chains(self, suffix: str, marker: str | None) -> list[str]:
        rules = [r.text(suffix) for r in self.rules]
        if marker is not None:
            rules.insert(0, self._marker_rule(marker))
        lines = [
            f"\tchain {CHAIN_NAME} {{",
            f"\t\t{CHAIN_HEADER}",
            *(f"\t\t{rule}" for rule in rules),
            "\t}",
        ]
        if self.forward:
            lines.extend(
                [
                    f"\tchain {FORWARD_CHAIN} {{",
                    f"\t\t{FORWARD_HEADER}",
                    *(f"\t\t{r.text(suffix)}" for r in self.forward),
                    "\t}",
                ]
            )
        return lines

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form of the table, for the state dir's records."""
        return {
            "header": list(self.header),
            "sets": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "flags": s.flags,
                    # One text, a line per element: a record can hold a million elements,
                    # and one JSON string costs a fraction of a list of them to write and read.
                    "elements": "\n".join(s.elements),
                    "size": s.size,
                    "timeout": s.timeout,
                }
                for s in self.sets
            ],
            "rules": [_rule_json(r) for r in self.rules],
            "forward": [_rule_json(r) for r in self.forward],
        }

    def _body(self, suffix: str, marker: str | None) -> str:
        sets = [s.text(suffix) for s in self.sets]
        return "\n".join([f"table {TABLE_REF} {{", *sets, *self._chains(suffix, marker), "}"])

    @staticmethod
    def _marker_rule(marker: str) -> str:
        return f'iif "lo" accept comment "{marker}"'


def _named(name: str, suffix: str) -> str:
    """A set's name as written: with `suffix`, unless it is a persistent (runtime) set."""
    return name if name in PERSISTENT_SETS else name + suffix


def table_from_json(data: object) -> NftTable:
    """The table recorded by `NftTable.to_json`; ValueError when the data is not that shape."""
    record = _mapping(data, "table")
    sets = tuple(
        NftSet(
            name=_text(item.get("name")),
            kind=_text(item.get("kind")),
            flags=_text(item.get("flags")),
            elements=_elements(item.get("elements")),
            size=_optional_int(item.get("size")),
            timeout=None if item.get("timeout") is None else _text(item.get("timeout")),
        )
        for item in (_mapping(raw, "set") for raw in _list(record.get("sets")))
    )
    return NftTable(
        header=_texts(record.get("header")),
        sets=sets,
        rules=_rules_from_json(record.get("rules")),
        forward=_rules_from_json(record.get("forward", [])),
    )


def _rule_json(rule: NftRule) -> dict[str, object]:
    return {
        "parts": [p if isinstance(p, str) else {"set": p.name} for p in rule.parts],
        "comment": rule.comment,
    }


def _rules_from_json(value: object) -> tuple[NftRule, ...]:
    return tuple(
        NftRule(
            parts=tuple(_part(p) for p in _list(item.get("parts"))),
            comment=None if item.get("comment") is None else _text(item.get("comment")),
        )
        for item in (_mapping(raw, "rule") for raw in _list(value))
    )


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _texts(value: object) -> tuple[str, ...]:
    return tuple(_text(v) for v in _list(value))


def _elements(value: object) -> tuple[str, ...]:
    """A set's elements as recorded: one text, a line each (a list in older records)."""
    if isinstance(value, str):
        return tuple(value.split("\n")) if value else ()
    return _texts(value)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("expected an integer")
    return value


def _part(value: object) -> str | SetRef:
    if isinstance(value, str):
        return value
    return SetRef(_text(_mapping(value, "set reference").get("set")))
