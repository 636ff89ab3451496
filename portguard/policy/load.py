"""Build a validated `Policy` from YAML; every problem is a PolicyError with file:line:col."""

from __future__ import annotations

import difflib
import gc
import hashlib
import io
import re
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from yaml.nodes import MappingNode, Node, SequenceNode

from portguard.errors import Location, PolicyError
from portguard.model import (
    MAX_PORT,
    AllowRule,
    DefaultVerdict,
    DenySource,
    ForwardedMode,
    IcmpMode,
    Limit,
    LintWarning,
    Network,
    Policy,
    PortRange,
    Proto,
    RateUnit,
)
from portguard.policy.bounded_read import (
    MAX_SET_FILE_BYTES,
    FileReadError,
    read_policy_bytes,
    read_regular_file,
)
from portguard.policy.lint import WarningCollector, lint_kinds
from portguard.policy.networks import (
    NetworkParts,
    NetworkSet,
    NotANetwork,
    collapse,
    collapse_keys,
    parse_network,
    to_network,
    union,
)
from portguard.policy.yamlnodes import NodeReader, compose_document, decode_text, describe, short
from portguard.services import ServiceError, ServiceTable, load_services

__all__ = ["MAX_ADDRESSES", "LoadedPolicy", "load_policy", "parse_policy", "read_policy_bytes"]

SUPPORTED_VERSION = 1
TOP_KEYS = (
    "version",
    "description",
    "default",
    "icmp",
    "log",
    "forwarded",
    "sets",
    "deny",
    "allow",
)
ALLOW_KEYS = ("service", "port", "proto", "from", "interface", "limit", "comment", "log")
SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
# Linux interface names (IFNAMSIZ 16 with the NUL), optionally ending in * as a prefix
# wildcard; the * counts towards the 15 characters (nft refuses a 16-character pattern).
INTERFACE_NAME = re.compile(r"(?=.{1,15}\Z)[A-Za-z0-9_][A-Za-z0-9_.@+-]*\*?\Z", re.ASCII)
# Windows interface aliases ("Ethernet 2", "vEthernet (Default Switch)"): no quote, comma or
# wildcard character but a final *. Linux targets refuse them with their location.
WINDOWS_ALIAS = re.compile(r"(?=.{1,256}\Z)[A-Za-z0-9_][A-Za-z0-9 _.@+()#-]*(?<! )\*?\Z", re.ASCII)
PORT_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?\Z", re.ASCII)
LIMIT = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*\Z", re.ASCII)
MAX_COMMENT = 256
MAX_PORT_DIGITS = 5
MAX_LIMIT = 1_000_000
# Addresses read from all set files of one policy together: bounds time and memory (a few
# hundred bytes each while loading) whatever the files hold.
MAX_ADDRESSES = 2_000_000
# Characters that can appear in an IP address or CIDR; a set-file token with any other is
# never quoted back (the file may be something else entirely, such as /etc/shadow).
NOT_ADDRESS_CHARACTER = re.compile(r"[^0-9a-fA-F:./]")
IPV4_VERSION = 4
IPV4_BITS = 32
# The set-file fast path's look-ups: "/N" as ipaddress reads it for IPv4 (a leading zero
# is allowed, as in "/024"; anything else takes the general path), and each prefix's
# host-bit mask.
IPV4_PREFIXES = MappingProxyType(
    {text: n for n in range(IPV4_BITS + 1) for text in (str(n), f"{n:02d}", f"{n:03d}")}
)
IPV4_HOST_MASKS = tuple((1 << (IPV4_BITS - n)) - 1 for n in range(IPV4_BITS + 1))


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy together with every warning its loading and linting produced."""

    policy: Policy
    warnings: tuple[LintWarning, ...]  # at most MAX_WARNINGS_PER_KIND of each kind
    omitted_warnings: int = 0  # warnings beyond that cap: counted, not kept
    # (path, sha256 hex) of every set file, of the very bytes parsed: apply's no-op proof
    set_files: tuple[tuple[str, str], ...] = ()

    @property
    def warning_count(self) -> int:
        """All warnings found, shown or not."""
        return len(self.warnings) + self.omitted_warnings


def load_policy(path: str | Path, services: ServiceTable | None = None) -> LoadedPolicy:
    """Read, validate and lint a policy file."""
    return parse_policy(read_policy_bytes(path), str(path), services=services)


def parse_policy(
    data: bytes | str,
    file: str,
    *,
    base_dir: Path | None = None,
    services: ServiceTable | None = None,
) -> LoadedPolicy:
    """Validate policy text (bytes are decoded as strict UTF-8) named `file`."""
    text = decode_text(file, data) if isinstance(data, bytes) else data
    builder = _Builder(
        reader=NodeReader(file),
        base_dir=base_dir if base_dir is not None else Path(file).parent,
        services=services if services is not None else load_services(),
    )
    with _gc_paused():  # a million set-file addresses are a million acyclic objects
        policy = builder.build(compose_document(file, text))
        for kind, warning in lint_kinds(policy, builder.key_locations):
            builder.warnings.add(kind, warning)
    return LoadedPolicy(
        policy, tuple(builder.warnings.kept), builder.warnings.omitted, tuple(builder.set_files)
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (it rescans every object as they grow); then resume.

    Loading makes no reference cycles that matter, and the collector's repeated passes over
    a million new objects cost a third of the time of a million-line set file.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Builder:
    reader: NodeReader
    base_dir: Path
    services: ServiceTable
    warnings: WarningCollector = field(default_factory=WarningCollector)
    addresses: int = 0  # read from set files so far (at most MAX_ADDRESSES)
    key_locations: dict[str, Location] = field(default_factory=dict)  # top-level keys, for lint
    set_files: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256 hex)

    def build(self, root: Node) -> Policy:
        r = self.reader
        top = r.mapping(root, "the policy")
        self._reject_unknown(top, TOP_KEYS, "the policy")
        self.key_locations = {key: r.location(key_node) for key, (key_node, _) in top.items()}
        for required in ("version", "allow"):
            if required not in top:
                raise r.error(root, f"missing required key '{required}'")
        version_node = top["version"][1]
        version = r.integer(version_node, "version")
        if version != SUPPORTED_VERSION:
            raise r.error(
                version_node,
                f"unsupported policy version {version} (this portguard reads version 1)",
            )
        sets = self._sets(top["sets"][1]) if "sets" in top else {}
        allow_node = top["allow"][1]
        if not _is_collection(allow_node) and r.scalar(allow_node) is None:
            raise r.error(allow_node, "allow must be a list (use [] to allow nothing)")
        allow = tuple(
            rule for item in r.sequence(allow_node, "allow") for rule in self._allow(item, sets)
        )
        deny = self._deny(top["deny"][1], sets) if "deny" in top else ()
        return Policy(
            path=r.file,
            version=version,
            description=self._optional_string(top, "description"),
            default=DefaultVerdict(self._optional_choice(top, "default", DefaultVerdict, "drop")),
            icmp=IcmpMode(self._optional_choice(top, "icmp", IcmpMode, "essential")),
            log=r.boolean(top["log"][1], "log") if "log" in top else False,
            sets=tuple((name, nets) for name, nets in sets.items()),
            allow=allow,
            forwarded=ForwardedMode(
                self._optional_choice(top, "forwarded", ForwardedMode, "filter")
            ),
            deny=deny,
        )

    def _reject_unknown(
        self, entries: dict[str, tuple[Node, Node]], known: tuple[str, ...], what: str
    ) -> None:
        for key, (key_node, _) in entries.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
                raise self.reader.error(key_node, f"unknown key '{short(key)}' in {what}{hint}")

    def _optional_string(self, entries: dict[str, tuple[Node, Node]], key: str) -> str | None:
        return self.reader.string(entries[key][1], key) if key in entries else None

    def _optional_choice(
        self,
        entries: dict[str, tuple[Node, Node]],
        key: str,
        enum: Iterable[DefaultVerdict | IcmpMode],
        default: str,
    ) -> str:
        if key not in entries:
            return default
        return self.reader.choice(entries[key][1], key, tuple(e.value for e in enum))

    # --- sets -------------------------------------------------------------------------------

    def _sets(self, node: Node) -> dict[str, Sequence[Network]]:
        r = self.reader
        sets: dict[str, Sequence[Network]] = {}
        for name, (key_node, value_node) in r.mapping(node, "sets").items():
            if not SET_NAME.match(name):
                raise r.error(
                    key_node,
                    f"set name '{short(name)}' must start with a letter or _ and use only "
                    "letters, digits, _ and - (at most 64)",
                )
            if _is_mapping(value_node):
                sets[name] = self._set_file(name, value_node)
            else:
                items = r.sequence(value_node, f"set '{name}'")
                sets[name] = collapse(
                    self._network(r.string(item, "an address"), r.location(item)) for item in items
                )
        return sets

    def _set_file(self, name: str, node: Node) -> NetworkSet:
        r = self.reader
        entries = r.mapping(node, f"set '{name}'")
        self._reject_unknown(entries, ("file",), f"set '{name}'")
        if "file" not in entries:
            raise r.error(node, f"set '{name}' needs a list of addresses or {{file: PATH}}")
        file_node = entries["file"][1]
        relative = r.string(file_node, "file")
        path = self.base_dir / relative
        try:
            data = read_regular_file(path, MAX_SET_FILE_BYTES)
        except FileReadError as exc:
            raise r.error(
                file_node, f"cannot read set file '{short(relative)}': {exc.reason}"
            ) from None
        file = str(path)
        self.set_files.append((file, hashlib.sha256(data).hexdigest()))
        text = decode_text(file, data, max_bytes=None)  # bounded by read_regular_file
        del data
        return self._set_file_networks(file, text)

    def _set_file_networks(self, file: str, text: str) -> NetworkSet:
        """The collapsed networks of a set file's text, streamed line by line as integers.

        A plain IPv4 address or CIDR without host bits is parsed here (inet_pton and two
        table look-ups, well under a microsecond a line); any other token takes
        _set_file_entry, which reads IPv6 and netmasks, warns of host bits and words every
        error. No object is made per line.
        """
        v4: list[int] = []  # start << 8 | prefix, as NetworkSet keys them
        v6: list[int] = []
        room = MAX_ADDRESSES - self.addresses
        pton, inet, from_bytes = socket.inet_pton, socket.AF_INET, int.from_bytes
        prefixes, host_masks = IPV4_PREFIXES, IPV4_HOST_MASKS
        for number, raw in enumerate(io.StringIO(text), start=1):
            token = (raw.split("#", 1)[0] if "#" in raw else raw).strip()
            if not token:
                continue
            if number > room and len(v4) + len(v6) >= room:  # lines bound addresses
                raise PolicyError(
                    _token_location(file, number, raw),
                    f"more than {MAX_ADDRESSES} addresses in the set files of this policy"
                    " (the limit)",
                )
            address, slash, prefix_text = token.partition("/")
            try:
                ip = from_bytes(pton(inet, address), "big")
            except (OSError, ValueError):  # not dotted-quad IPv4 (UnicodeError is a ValueError)
                ip = -1
            if ip >= 0:
                prefix = prefixes.get(prefix_text, -1) if slash else IPV4_BITS
                if prefix >= 0 and not ip & host_masks[prefix]:
                    v4.append(ip << 8 | prefix)
                    continue
            version, start, prefix = self._set_file_entry(token, _token_location(file, number, raw))
            (v4 if version == IPV4_VERSION else v6).append(start << 8 | prefix)
        self.addresses += len(v4) + len(v6)
        del text
        return collapse_keys(v4, v6)

    def _set_file_entry(self, token: str, location: Location) -> NetworkParts:
        """One set-file token as network parts; an error quotes it only if it looks like one."""
        outside = NOT_ADDRESS_CHARACTER.search(token)
        if outside is not None:
            at = Location(location.file, location.line, location.col + outside.start())
            if outside.group() == "%":
                raise PolicyError(at, "zone indexes (%...) are not allowed")
            raise PolicyError(
                at,
                f"not an IP address or CIDR network (it cannot contain '{short(outside.group())}')",
            )
        return self._parts(token, location)

    def _network(self, text: str, location: Location) -> Network:
        return to_network(self._parts(text.strip(), location))

    def _parts(self, text: str, location: Location) -> NetworkParts:
        if "%" in text:
            raise PolicyError(location, f"'{short(text)}': zone indexes (%...) are not allowed")
        try:
            parsed = parse_network(text)
        except NotANetwork:
            raise PolicyError(
                location, f"'{short(text)}' is not an IP address or CIDR network"
            ) from None
        if parsed.host_bits:
            self.warnings.add_lazily(
                "host-bits",
                location,
                lambda: f"'{short(text)}' has host bits set; it means {to_network(parsed.parts)}",
            )
        return parsed.parts

    # --- deny list ------------------------------------------------------------------------------

    def _deny(self, node: Node, sets: dict[str, Sequence[Network]]) -> tuple[DenySource, ...]:
        """The `deny:` items: an address, a CIDR, `@set`, or `{file: PATH}` (a set file)."""
        r = self.reader
        if not _is_collection(node) and r.scalar(node) is None:
            raise r.error(node, "deny must be a list of sources (use [] to deny no one)")
        items: list[DenySource] = []
        for item in r.sequence(node, "deny", allow_scalar=True):
            location = r.location(item)
            if _is_mapping(item):
                entries = r.mapping(item, "a deny file")
                name = "file:" + (r.string(entries["file"][1], "file") if "file" in entries else "")
                networks: Sequence[Network] = self._set_file("deny", item)
            else:
                name = r.string(item, "a deny source")
                if name.startswith("@"):
                    if name[1:] not in sets:
                        raise r.error(item, f"unknown set '{short(name)}' (define it under sets:)")
                    networks = sets[name[1:]]
                else:
                    networks = (self._network(name, location),)
            items.append(DenySource(name=name, networks=networks, location=location))
        return tuple(items)

    # --- allow entries ------------------------------------------------------------------------

    def _allow(self, node: Node, sets: dict[str, Sequence[Network]]) -> tuple[AllowRule, ...]:
        """One allow entry as rules: one, or one per protocol group of a service profile."""
        r = self.reader
        entry = r.mapping(node, "an allow entry")
        self._reject_unknown(entry, ALLOW_KEYS, "an allow entry")
        given = self._protos(entry["proto"][1]) if "proto" in entry else None
        if ("port" in entry) == ("service" in entry):
            raise r.error(node, "an allow entry needs exactly one of 'port' or 'service'")
        service: str | None = None
        if "service" in entry:
            service_node = entry["service"][1]
            service = r.string(service_node, "service")
            groups = self._service_ports(service, given, service_node)
        else:
            groups = ((given or (Proto.TCP,), self._ports(entry["port"][1])),)
        sources: Sequence[Network] | None = None
        names: tuple[str, ...] = ()
        if "from" in entry:
            names, sources = self._sources(entry["from"][1], sets)
        interface = None
        if "interface" in entry:
            interface_node = entry["interface"][1]
            interface = r.string(interface_node, "interface")
            if not (INTERFACE_NAME.match(interface) or WINDOWS_ALIAS.match(interface)):
                raise r.error(
                    interface_node,
                    f"'{short(interface)}' is not a valid interface name (1-15 characters of"
                    " A-Z a-z 0-9 _ . @ + -, or a Windows alias that may also hold spaces and"
                    " parentheses; optionally ending in *)",
                )
        limit = self._limit(entry["limit"][1]) if "limit" in entry else None
        comment = None
        if "comment" in entry:
            comment_node = entry["comment"][1]
            comment = r.string(comment_node, "comment")
            if len(comment) > MAX_COMMENT:
                raise r.error(comment_node, f"comment is longer than {MAX_COMMENT} characters")
        return tuple(
            AllowRule(
                ports=ports,
                protos=protos,
                sources=sources,
                source_names=names,
                interface=interface,
                limit=limit,
                comment=comment,
                service=service,
                location=r.location(node),
                log=r.boolean(entry["log"][1], "log") if "log" in entry else False,
            )
            for protos, ports in groups
        )

    def _protos(self, node: Node) -> tuple[Proto, ...]:
        r = self.reader
        items = r.sequence(node, "proto", allow_scalar=True)
        if not items:
            raise r.error(node, "proto must name at least one of tcp, udp")
        found = {Proto(r.choice(item, "proto", ("tcp", "udp"))) for item in items}
        return tuple(p for p in Proto if p in found)

    def _service_ports(
        self, name: str, protos: tuple[Proto, ...] | None, node: Node
    ) -> tuple[tuple[tuple[Proto, ...], tuple[PortRange, ...]], ...]:
        if not self.services.knows(name):
            raise self.reader.error(
                node,
                f"unknown service '{short(name)}' (not in {self.services.source}); use port: N",
            )
        try:
            return self.services.resolve(name, protos)
        except ServiceError as why:
            raise self.reader.error(node, str(why)) from None

    def _ports(self, node: Node) -> tuple[PortRange, ...]:
        r = self.reader
        items = r.sequence(node, "port", allow_scalar=True)
        if not items:
            raise r.error(node, "port must name at least one port")
        ranges: list[PortRange] = []
        for item in items:
            value = r.scalar(item, "port")
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise r.error(item, f'port must be a number or "A-B", found {describe(value)}')
            match = PORT_RANGE.match(str(value))
            if match is None:
                raise r.error(item, f"'{short(str(value))}' is not a port or a port range \"A-B\"")
            first = _port_number(r, item, match.group(1))
            last = first if match.group(2) is None else _port_number(r, item, match.group(2))
            if first > last:
                raise r.error(item, f"port range {first}-{last} is reversed (first > last)")
            ranges.append(PortRange(first, last))
        return tuple(sorted(set(ranges)))

    def _sources(
        self, node: Node, sets: dict[str, Sequence[Network]]
    ) -> tuple[tuple[str, ...], Sequence[Network]]:
        r = self.reader
        items = r.sequence(node, "from", allow_scalar=True)
        if not items:
            raise r.error(node, "from is empty (that would allow no one); omit it to allow any")
        names: list[str] = []
        networks: list[Network] = []
        whole_sets: list[Sequence[Network]] = []
        for item in items:
            text = r.string(item, "a from source")
            names.append(text)
            if text.startswith("@"):
                if text[1:] not in sets:
                    raise r.error(item, f"unknown set '{short(text)}' (define it under sets:)")
                whole_sets.append(sets[text[1:]])
            else:
                networks.append(self._network(text, r.location(item)))
        if len(whole_sets) == 1 and not networks:
            return tuple(names), whole_sets[0]  # already collapsed; a big set is not redone
        return tuple(names), union([tuple(networks), *whole_sets])

    def _limit(self, node: Node) -> Limit:
        r = self.reader
        text = r.string(node, "limit")
        match = LIMIT.match(text)
        units = tuple(u.value for u in RateUnit)
        if match is None or match.group(2) not in units:
            raise r.error(node, f"limit must look like N/{'|'.join(units)}, found '{short(text)}'")
        digits = match.group(1)
        count = int(digits) if len(digits) <= len(str(MAX_LIMIT)) else MAX_LIMIT + 1
        if not 1 <= count <= MAX_LIMIT:
            raise r.error(node, f"limit count {short(digits)} must be between 1 and {MAX_LIMIT}")
        return Limit(count, RateUnit(match.group(2)))


def _token_location(file: str, number: int, line: str) -> Location:
    """Where a set-file line's token starts: its line, and the column after leading blanks."""
    content = line.split("#", 1)[0]
    return Location(file, number, len(content) - len(content.lstrip()) + 1)


def _is_mapping(node: Node) -> bool:
    return isinstance(node, MappingNode)


def _is_collection(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode)


def _port_number(r: NodeReader, item: Node, digits: str) -> int:
    """One port of "A" or "A-B" as an int; leading zeros and huge numbers are located errors."""
    if len(digits) > 1 and digits.startswith("0"):
        plain = digits.lstrip("0") or "0"
        raise r.error(item, f"port {short(digits)}: write {short(plain)} without the leading zero")
    port = int(digits) if len(digits) <= MAX_PORT_DIGITS else MAX_PORT + 1
    if not 1 <= port <= MAX_PORT:
        raise r.error(item, f"port {short(digits)} is out of range 1-{MAX_PORT}")
    return port


def require_linux_interfaces(policy: Policy) -> None:
    """Refuse, with its location, an `interface` that only a Windows alias can be."""
    for rule in policy.allow:
        if rule.interface is not None and not INTERFACE_NAME.match(rule.interface):
            raise PolicyError(
                rule.location,
                f"interface '{short(rule.interface)}' is not a Linux interface name (1-15"
                " characters of A-Z a-z 0-9 _ . @ + -, optionally ending in *); a Windows"
                " alias works with the Windows targets only",
            )
