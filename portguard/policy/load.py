"""Build a validated `Policy` from YAML; every problem is a PolicyError with file:line:col."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, SequenceNode

from portguard.errors import Location, PolicyError, PortguardError
from portguard.model import (
    MAX_PORT,
    AllowRule,
    DefaultVerdict,
    IcmpMode,
    Limit,
    LintWarning,
    Network,
    Policy,
    PortRange,
    Proto,
    RateUnit,
)
from portguard.policy.lint import lint_policy
from portguard.policy.yamlnodes import NodeReader, compose_document, decode_text, describe
from portguard.services import ServiceTable, load_services

__all__ = ["LoadedPolicy", "load_policy", "parse_policy"]

SUPPORTED_VERSION = 1
TOP_KEYS = ("version", "description", "default", "icmp", "log", "sets", "allow")
ALLOW_KEYS = ("service", "port", "proto", "from", "interface", "limit", "comment")
SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
# Linux interface names (IFNAMSIZ 16 with the NUL), optionally ending in * as a prefix
# wildcard; the * counts towards the 15 characters (nft refuses a 16-character pattern).
INTERFACE_NAME = re.compile(r"(?=.{1,15}\Z)[A-Za-z0-9_][A-Za-z0-9_.@+-]*\*?\Z", re.ASCII)
PORT_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?\Z", re.ASCII)
LIMIT = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*\Z", re.ASCII)
MAX_COMMENT = 256


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy together with every warning its loading and linting produced."""

    policy: Policy
    warnings: tuple[LintWarning, ...]


def load_policy(path: str | Path, services: ServiceTable | None = None) -> LoadedPolicy:
    """Read, validate and lint a policy file."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PortguardError(f"{file}: cannot read policy: {exc.strerror or exc}") from None
    return parse_policy(data, file, services=services)


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
        warnings=[],
    )
    policy = builder.build(compose_document(file, text))
    return LoadedPolicy(policy, tuple(builder.warnings) + lint_policy(policy))


@dataclass
class _Builder:
    reader: NodeReader
    base_dir: Path
    services: ServiceTable
    warnings: list[LintWarning]

    def build(self, root: Node) -> Policy:
        r = self.reader
        top = r.mapping(root, "the policy")
        self._reject_unknown(top, TOP_KEYS, "the policy")
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
        allow = tuple(self._allow(item, sets) for item in r.sequence(allow_node, "allow"))
        return Policy(
            path=r.file,
            version=version,
            description=self._optional_string(top, "description"),
            default=DefaultVerdict(self._optional_choice(top, "default", DefaultVerdict, "drop")),
            icmp=IcmpMode(self._optional_choice(top, "icmp", IcmpMode, "essential")),
            log=r.boolean(top["log"][1], "log") if "log" in top else False,
            sets=tuple((name, nets) for name, nets in sets.items()),
            allow=allow,
        )

    def _reject_unknown(
        self, entries: dict[str, tuple[Node, Node]], known: tuple[str, ...], what: str
    ) -> None:
        for key, (key_node, _) in entries.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
                raise self.reader.error(key_node, f"unknown key '{key}' in {what}{hint}")

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

    def _sets(self, node: Node) -> dict[str, tuple[Network, ...]]:
        r = self.reader
        sets: dict[str, tuple[Network, ...]] = {}
        for name, (key_node, value_node) in r.mapping(node, "sets").items():
            if not SET_NAME.match(name):
                raise r.error(
                    key_node,
                    f"set name '{name}' must start with a letter or _ and use only "
                    "letters, digits, _ and - (at most 64)",
                )
            if _is_mapping(value_node):
                sets[name] = self._set_file(name, value_node)
            else:
                items = r.sequence(value_node, f"set '{name}'")
                sets[name] = _collapse(
                    self._network(r.string(item, "an address"), r.location(item)) for item in items
                )
        return sets

    def _set_file(self, name: str, node: Node) -> tuple[Network, ...]:
        r = self.reader
        entries = r.mapping(node, f"set '{name}'")
        self._reject_unknown(entries, ("file",), f"set '{name}'")
        if "file" not in entries:
            raise r.error(node, f"set '{name}' needs a list of addresses or {{file: PATH}}")
        file_node = entries["file"][1]
        relative = r.string(file_node, "file")
        path = self.base_dir / relative
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise r.error(
                file_node, f"cannot read set file '{relative}': {exc.strerror or exc}"
            ) from None
        text = decode_text(str(path), data, max_bytes=None)  # set files have no size limit
        networks: list[Network] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            content = raw.split("#", 1)[0]
            token = content.strip()
            if not token:
                continue
            col = len(content) - len(content.lstrip()) + 1
            networks.append(self._network(token, Location(str(path), number, col)))
        return _collapse(networks)

    def _network(self, text: str, location: Location) -> Network:
        if "%" in text:
            raise PolicyError(location, f"'{text}': zone indexes (%...) are not allowed")
        try:
            return ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as strict_error:
            try:
                network = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise PolicyError(
                    location, f"'{text}' is not an IP address or CIDR network"
                ) from None
            if "host bits set" not in str(strict_error):
                raise PolicyError(location, f"'{text}': {strict_error}") from None
            self.warnings.append(
                LintWarning(location, f"'{text}' has host bits set; it means {network}")
            )
            return network

    # --- allow entries ------------------------------------------------------------------------

    def _allow(self, node: Node, sets: dict[str, tuple[Network, ...]]) -> AllowRule:
        r = self.reader
        entry = r.mapping(node, "an allow entry")
        self._reject_unknown(entry, ALLOW_KEYS, "an allow entry")
        protos = self._protos(entry["proto"][1]) if "proto" in entry else (Proto.TCP,)
        if ("port" in entry) == ("service" in entry):
            raise r.error(node, "an allow entry needs exactly one of 'port' or 'service'")
        service: str | None = None
        if "service" in entry:
            service_node = entry["service"][1]
            service = r.string(service_node, "service")
            ports: tuple[PortRange, ...] = (self._service_port(service, protos, service_node),)
        else:
            ports = self._ports(entry["port"][1])
        sources: tuple[Network, ...] | None = None
        names: tuple[str, ...] = ()
        if "from" in entry:
            names, sources = self._sources(entry["from"][1], sets)
        interface = None
        if "interface" in entry:
            interface_node = entry["interface"][1]
            interface = r.string(interface_node, "interface")
            if not INTERFACE_NAME.match(interface):
                raise r.error(
                    interface_node,
                    f"'{interface}' is not a valid interface name (1-15 characters of"
                    " A-Z a-z 0-9 _ . @ + -, optionally ending in *)",
                )
        limit = self._limit(entry["limit"][1]) if "limit" in entry else None
        comment = None
        if "comment" in entry:
            comment_node = entry["comment"][1]
            comment = r.string(comment_node, "comment")
            if len(comment) > MAX_COMMENT:
                raise r.error(comment_node, f"comment is longer than {MAX_COMMENT} characters")
        return AllowRule(
            ports=ports,
            protos=protos,
            sources=sources,
            source_names=names,
            interface=interface,
            limit=limit,
            comment=comment,
            service=service,
            location=r.location(node),
        )

    def _protos(self, node: Node) -> tuple[Proto, ...]:
        r = self.reader
        items = r.sequence(node, "proto", allow_scalar=True)
        if not items:
            raise r.error(node, "proto must name at least one of tcp, udp")
        found = {Proto(r.choice(item, "proto", ("tcp", "udp"))) for item in items}
        return tuple(p for p in Proto if p in found)

    def _service_port(self, name: str, protos: tuple[Proto, ...], node: Node) -> PortRange:
        if not self.services.knows(name):
            raise self.reader.error(
                node, f"unknown service '{name}' (not in {self.services.source}); use port: N"
            )
        found = {proto: self.services.lookup(name, proto) for proto in protos}
        for proto, port in found.items():
            if port is None:
                raise self.reader.error(node, f"service '{name}' has no {proto.value} port")
        ports = {p for p in found.values() if p is not None}
        if len(ports) != 1:
            raise self.reader.error(
                node, f"service '{name}' uses different ports per protocol; write one entry each"
            )
        port = ports.pop()
        return PortRange(port, port)

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
                raise r.error(item, f"'{value}' is not a port or a port range \"A-B\"")
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            for port in (first, last):
                if not 1 <= port <= MAX_PORT:
                    raise r.error(item, f"port {port} is out of range 1-{MAX_PORT}")
            if first > last:
                raise r.error(item, f"port range {first}-{last} is reversed (first > last)")
            ranges.append(PortRange(first, last))
        return tuple(sorted(set(ranges)))

    def _sources(
        self, node: Node, sets: dict[str, tuple[Network, ...]]
    ) -> tuple[tuple[str, ...], tuple[Network, ...]]:
        r = self.reader
        items = r.sequence(node, "from", allow_scalar=True)
        if not items:
            raise r.error(node, "from is empty (that would allow no one); omit it to allow any")
        names: list[str] = []
        networks: list[Network] = []
        for item in items:
            text = r.string(item, "a from source")
            names.append(text)
            if text.startswith("@"):
                if text[1:] not in sets:
                    raise r.error(item, f"unknown set '{text}' (define it under sets:)")
                networks.extend(sets[text[1:]])
            else:
                networks.append(self._network(text, r.location(item)))
        return tuple(names), _collapse(networks)

    def _limit(self, node: Node) -> Limit:
        r = self.reader
        text = r.string(node, "limit")
        match = LIMIT.match(text)
        units = tuple(u.value for u in RateUnit)
        if match is None or match.group(2) not in units:
            raise r.error(node, f"limit must look like N/{'|'.join(units)}, found '{text}'")
        count = int(match.group(1))
        if not 1 <= count <= 1_000_000:
            raise r.error(node, f"limit count {count} must be between 1 and 1000000")
        return Limit(count, RateUnit(match.group(2)))


def _is_mapping(node: Node) -> bool:
    return isinstance(node, MappingNode)


def _is_collection(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode)


def _collapse(networks: Iterable[Network]) -> tuple[Network, ...]:
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for network in networks:
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        else:
            v6.append(network)
    return tuple(ipaddress.collapse_addresses(v4)) + tuple(ipaddress.collapse_addresses(v6))
