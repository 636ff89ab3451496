"""Service names to ports: built-in profiles first, then /etc/services (or a small table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from portguard.model import PortRange, Proto
from portguard.service_profiles import PROFILES

__all__ = [
    "BUILTIN_SERVICES",
    "ServiceError",
    "ServiceTable",
    "builtin_services",
    "load_services",
    "parse_services",
]

DEFAULT_SERVICES_FILE = Path("/etc/services")

# Used where /etc/services is missing (Windows, minimal containers): name -> (port, protocols).
BUILTIN_SERVICES: Mapping[str, tuple[int, tuple[str, ...]]] = MappingProxyType(
    {
        "ftp": (21, ("tcp",)),
        "ssh": (22, ("tcp",)),
        "telnet": (23, ("tcp",)),
        "smtp": (25, ("tcp",)),
        "domain": (53, ("tcp", "udp")),
        "dns": (53, ("tcp", "udp")),
        "bootps": (67, ("udp",)),
        "bootpc": (68, ("udp",)),
        "tftp": (69, ("udp",)),
        "http": (80, ("tcp", "udp")),
        "www": (80, ("tcp", "udp")),
        "pop3": (110, ("tcp",)),
        "ntp": (123, ("udp",)),
        "imap": (143, ("tcp",)),
        "imap2": (143, ("tcp",)),
        "snmp": (161, ("tcp", "udp")),
        "ldap": (389, ("tcp", "udp")),
        "https": (443, ("tcp", "udp")),
        "microsoft-ds": (445, ("tcp",)),
        "submissions": (465, ("tcp",)),
        "syslog": (514, ("udp",)),
        "submission": (587, ("tcp",)),
        "ldaps": (636, ("tcp", "udp")),
        "imaps": (993, ("tcp",)),
        "pop3s": (995, ("tcp",)),
        "openvpn": (1194, ("tcp", "udp")),
        "ms-sql-s": (1433, ("tcp",)),
        "mysql": (3306, ("tcp",)),
        "ms-wbt-server": (3389, ("tcp",)),
        "rdp": (3389, ("tcp",)),
        "postgresql": (5432, ("tcp",)),
        "wireguard": (51820, ("udp",)),
    }
)


class ServiceError(ValueError):
    """A service name that cannot be resolved as asked (the loader adds where)."""


@dataclass(frozen=True)
class ServiceTable:
    """Immutable lookup of service name (or alias) and protocol to port."""

    ports: Mapping[tuple[str, str], int]  # (name, proto) -> port
    source: str  # the file read, or "built-in"

    def lookup(self, name: str, proto: Proto) -> int | None:
        """The port of `name` for `proto`, or None when unknown."""
        return self.ports.get((name.lower(), proto.value))

    def knows(self, name: str) -> bool:
        """Whether `name` is a profile or a service for any protocol."""
        lowered = name.lower()
        return lowered in PROFILES or any((lowered, proto.value) in self.ports for proto in Proto)

    def resolve(
        self, name: str, protos: tuple[Proto, ...] | None
    ) -> tuple[tuple[tuple[Proto, ...], tuple[PortRange, ...]], ...]:
        """Ports of `name` as (protocols, ports) groups; protocols with equal ports share one.

        Without `protos` a profile gives all its protocols, any other name tcp. With
        `protos`, each protocol takes the profile's ports, else /etc/services' port.
        Raises ServiceError when the name is unknown or lacks a port for a protocol.
        """
        lowered = name.lower()
        if not self.knows(name):
            raise ServiceError(f"unknown service '{name}' (not in {self.source}); use port: N")
        profile = PROFILES.get(lowered)
        wanted = protos or (profile.protos if profile is not None else (Proto.TCP,))
        groups: dict[tuple[PortRange, ...], list[Proto]] = {}
        for proto in wanted:
            ports = profile.ports(proto) if profile is not None else ()
            if not ports:
                port = self.lookup(lowered, proto)
                if port is None:
                    raise ServiceError(f"service '{name}' has no {proto.value} port")
                ports = (PortRange(port, port),)
            groups.setdefault(ports, []).append(proto)
        return tuple((tuple(found), ports) for ports, found in groups.items())


def parse_services(text: str) -> dict[tuple[str, str], int]:
    """Parse /etc/services text into {(name, proto): port}; malformed lines are skipped."""
    table: dict[tuple[str, str], int] = {}
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2 or "/" not in fields[1]:
            continue
        port_text, _, proto = fields[1].partition("/")
        if not port_text.isdigit() or proto not in ("tcp", "udp"):
            continue
        for name in fields[:1] + fields[2:]:
            table.setdefault((name.lower(), proto), int(port_text))
    return table


def builtin_services() -> dict[tuple[str, str], int]:
    """The built-in table as {(name, proto): port}."""
    return {
        (name, proto): port for name, (port, protos) in BUILTIN_SERVICES.items() for proto in protos
    }


def load_services(path: Path = DEFAULT_SERVICES_FILE) -> ServiceTable:
    """Read the services file; fall back to the built-in table when it is missing or empty."""
    try:
        parsed = parse_services(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        parsed = {}
    if parsed:
        return ServiceTable(ports=MappingProxyType(parsed), source=str(path))
    return ServiceTable(ports=MappingProxyType(builtin_services()), source="built-in")
