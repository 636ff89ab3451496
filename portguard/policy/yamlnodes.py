"""YAML to located nodes: syntax errors, duplicate keys and aliases become one-line errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from portguard.errors import Location, PolicyError
from portguard.model import MAX_PORT
from portguard.policy.bounded_read import MAX_POLICY_BYTES

__all__ = [
    "MAX_ECHO",
    "MAX_POLICY_BYTES",
    "NodeReader",
    "compose_document",
    "decode_text",
    "describe",
    "int_form_problem",
    "short",
]

MAX_NESTING = 64
MAX_ECHO = 60  # characters of a value quoted back in an error message
MAX_INT_DIGITS = 20  # longer integers are out of range wherever the policy reads one
MAPPING_TAG = "tag:yaml.org,2002:map"
SEQUENCE_TAG = "tag:yaml.org,2002:seq"
NULL_TAG = "tag:yaml.org,2002:null"
INT_TAG = "tag:yaml.org,2002:int"
# What YAML 1.1 (PyYAML's resolver) reads as an integer, and the plain decimal subset of it.
YAML11_INT = re.compile(
    r"[-+]?(?:0b[0-1_]+|0[0-7_]+|(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)\Z",
    re.ASCII,
)
CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z", re.ASCII)
SURROGATE = re.compile("[\ud800-\udfff]")


def _mark_location(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def decode_text(file: str, data: bytes, *, max_bytes: int | None = MAX_POLICY_BYTES) -> str:
    """Decode a policy file strictly as UTF-8; a bad byte is an error at its line and column."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PolicyError(
            Location(file, 1, 1), f"file is larger than the limit of {max_bytes} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise PolicyError(
                Location(file, 1, 1), "file is UTF-16 (byte-order mark); save it as UTF-8"
            ) from None
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise PolicyError(
            Location(file, line, col), f"not valid UTF-8 (byte 0x{data[exc.start]:02x})"
        ) from None
    return text.removeprefix("\ufeff")


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases, so no document can expand to exponential size."""

    policy_file = "<policy>"
    nesting = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise PolicyError(
                _mark_location(self.policy_file, event.start_mark),
                "YAML aliases (*name) are not allowed in a policy; write the value out",
            )
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise PolicyError(
                    _mark_location(self.policy_file, event.start_mark),
                    f"YAML nested deeper than {MAX_NESTING} levels",
                )
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1


def compose_document(file: str, text: str) -> Node:
    """Compose the single YAML document in `text`; raise PolicyError on any syntax problem."""
    try:
        loader = _NoAliasLoader(text)
    except yaml.reader.ReaderError as exc:
        raise PolicyError(
            _position_location(file, text, exc.position),
            f"character U+{exc.character:04X} is not allowed in YAML",
        ) from None
    loader.policy_file = file
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            started = exc.context_mark
            if started is not None and mark is not None and started.line != mark.line:
                problem = f"{exc.context} (from line {started.line + 1}), {exc.problem}"
            else:
                problem = f"{exc.context}, {exc.problem}"
        raise PolicyError(_mark_location(file, mark), f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(Location(file, 1, 1), f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        raise PolicyError(Location(file, 1, 1), "policy is empty")
    return root


def _position_location(file: str, text: str, position: int) -> Location:
    before = text[:position]
    return Location(file, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)


@dataclass
class NodeReader:
    """Reads typed values out of composed nodes, raising located errors; one per file."""

    file: str
    _constructor: yaml.constructor.SafeConstructor = field(
        default_factory=yaml.constructor.SafeConstructor
    )

    def location(self, node: Node) -> Location:
        """Where `node` starts in the file."""
        return _mark_location(self.file, node.start_mark)

    def error(self, node: Node, message: str) -> PolicyError:
        """A PolicyError located at `node`."""
        return PolicyError(self.location(node), message)

    def scalar(self, node: Node, what: str | None = None) -> object:
        """The Python value of a scalar node (int, bool, str, None, float, ...)."""
        if not isinstance(node, ScalarNode):
            expected = f"{what} must be a single value" if what else "expected a single value"
            raise self.error(node, f"{expected}, found {_kind(node)}")
        if node.tag == INT_TAG:
            problem = int_form_problem(node.value, what)
            if problem is not None:
                raise self.error(node, problem)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise self.error(
                node,
                f"unsupported YAML tag '{short(node.tag)}' on '{short(node.value)}';"
                " quote it if it is text",
            ) from None
        except (ValueError, TypeError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.error(node, f"'{short(node.value)}' is not a valid YAML {kind}") from None
        if isinstance(value, str):
            surrogate = SURROGATE.search(value)
            if surrogate is not None:
                code = ord(surrogate.group())
                raise self.error(
                    node,
                    f"text contains a lone surrogate U+{code:04X} (not valid Unicode);"
                    " write the character itself or its \\U escape",
                )
        return value

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries as {key: (key node, value node)}; duplicate keys are an error."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping, found {_kind(node)}")
        if node.tag != MAPPING_TAG:
            raise self.error(node, f"unsupported YAML tag '{node.tag}' on {what}")
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, f"keys in {what} must be strings, found {describe(key)}")
            if key in entries:
                first = self.location(entries[key][0])
                raise self.error(
                    key_node, f"duplicate key '{key}' in {what} (first at line {first.line})"
                )
            entries[key] = (key_node, value_node)
        return entries

    def sequence(self, node: Node, what: str, *, allow_scalar: bool = False) -> list[Node]:
        """A sequence's items; with `allow_scalar`, a lone value counts as a one-item list."""
        if isinstance(node, SequenceNode):
            if node.tag != SEQUENCE_TAG:
                raise self.error(node, f"unsupported YAML tag '{node.tag}' on {what}")
            return list(node.value)
        if allow_scalar and isinstance(node, ScalarNode):
            return [node]
        raise self.error(node, f"{what} must be a list, found {_kind(node)}")

    def string(self, node: Node, what: str) -> str:
        """A string value; numbers, booleans and nulls are an error."""
        value = self.scalar(node, what)
        if not isinstance(value, str):
            raise self.error(node, f"{what} must be a string, found {describe(value)}")
        return value

    def integer(self, node: Node, what: str) -> int:
        """An integer value (booleans are not integers here)."""
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be an integer, found {describe(value)}")
        return value

    def boolean(self, node: Node, what: str) -> bool:
        """A boolean value (true / false)."""
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, found {describe(value)}")
        return value

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str:
        """A string that must be one of `choices`."""
        value = self.scalar(node, what)
        if not isinstance(value, str) or value not in choices:
            raise self.error(
                node, f"{what} must be one of {', '.join(choices)}; found {describe(value)}"
            )
        return value


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL_TAG:
        return "nothing (null)"
    return "a single value"


def describe(value: object) -> str:
    """A YAML value as an admin would name it: "the number 5", "the boolean true", "'x'"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {short(str(value))}"
    return f"'{short(str(value))}'"


def short(text: str, limit: int = MAX_ECHO) -> str:
    """`text` fit to quote in a one-line message: control characters escaped, at most `limit`."""
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def int_form_problem(raw: str, what: str | None) -> str | None:
    """Why a YAML 1.1 integer written as `raw` is refused, or None for plain decimal.

    YAML 1.1 (PyYAML) reads 20:21 as base 60 (1221), 022 as octal (18), 0x50 as hex and
    1_000 as 1000; a policy must not silently mean another number than it shows.
    """
    if not YAML11_INT.match(raw):
        return None  # not an integer form at all (!!int on text): the constructor refuses it
    subject = f"{what} {short(raw)}" if what else short(raw)
    body = raw.lstrip("+-")
    if CANONICAL_INT.match(raw):
        if len(body) > MAX_INT_DIGITS:
            return f"{subject} is out of range" + (f" 1-{MAX_PORT}" if what == "port" else "")
        return None
    if ":" in body:
        parts = body.split(":")
        if what == "port" and len(parts) == 2:
            hint = f'write a range as "{parts[0]}-{parts[1]}"'
        elif what == "port":
            hint = 'write a range as "A-B"'
        else:
            hint = "write a decimal number, or quote it if it is text"
        return f"{subject} is read by YAML 1.1 as a base-60 number; {hint}"
    if body[:2].lower() in ("0x", "0b"):
        base = "hexadecimal" if body[1] in "xX" else "binary"
        return f"{subject} is read by YAML 1.1 as a {base} number; write it in decimal"
    if "_" in body:
        return f"{subject}: YAML 1.1 ignores the '_'; write it without one"
    if body.startswith("0"):
        plain = body.lstrip("0") or "0"
        return (
            f"{subject} is read by YAML 1.1 as an octal number;"
            f" write {short(plain)} without the leading zero"
        )
    if raw.startswith("+"):
        return f"{subject}: write {short(body)} without the '+'"
    return f"{subject} is not a plain decimal number"
