"""Published ports as a fact: the DNAT rules of the live ruleset, in any table.

Docker, podman/netavark, libvirt and kube-proxy publish a port by DNATing new connections to
another address. Two sources are read, each by a pure parser:

- the kernel's stateless text listing of every table but portguard's (the tables named
  over netlink, each listed alone, so portguard's sets are never fetched): native
  `dnat to ADDR[:PORT]`, `dnat ip to ...`, `dnat ip6 to [ADDR]:PORT` and the DNAT targets
  of iptables-nft rules, which nft translates to the same text where it can;
- `iptables-nft-save -t nat` / `ip6tables-nft-save -t nat` for the tables iptables-nft
  manages. nft translates xt targets for one family only (libxtables 1.8.9: the second
  family's rules list as `tcp dport 8080 counter` with no target, and "XT target DNAT not
  found" on stderr), so those tables are read from the save output instead.

Shapes not understood (maps, named sets, rules without a destination port) are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from portguard.backends.nftables import open_nftables
from portguard.facts.nft_netlink import table_names
from portguard.model import Proto
from portguard.render.nft_table import TABLE_FAMILY, TABLE_NAME

__all__ = [
    "MAX_PORTS_PER_RULE",
    "PublishedPort",
    "PublishedPorts",
    "parse_ruleset_listing",
    "parse_save",
    "read_published",
]

MAX_PORTS_PER_RULE = 64  # a set or range in one rule is listed up to this many ports
OWN_TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
IPTABLES_NFT_WARNING = re.compile(r"table (ip6?) (\S+) is managed by iptables-nft")
SAVE_TOOLS = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}
TABLE_LINE = re.compile(r"^table (\S+) (\S+) \{$")
CHAIN_HOOK = re.compile(r"\btype nat hook (\w+)\b")
DNAT = re.compile(r"(?:^|\s)dnat(?: (?:ip|ip6))? to (\S+)")
PORT_VALUE = r"(\{[^}]*\}|\d+(?:-\d+)?)"
DPORT = re.compile(r"\b(tcp|udp|th) dport (?:(!=) )?" + PORT_VALUE)
L4PROTO = re.compile(r"\b(?:meta l4proto|ip protocol|ip6 nexthdr) (\{[^}]*\}|\w+)")
SAVE_RULE = re.compile(r"^-A (\S+) (.*)$")
SAVE_PROTO = re.compile(r"(?:^|\s)(!\s)?-p (tcp|udp)\b")
SAVE_DPORT = re.compile(r"(?:^|\s)(!\s)?--dports? (\S+)")
SAVE_DNAT = re.compile(r"-j DNAT --to-destination (\S+)")


@dataclass(frozen=True)
class PublishedPort:
    """One port this host DNATs elsewhere: the published (original) port and its target."""

    proto: Proto
    port: int  # the port clients connect to
    to: str  # where it goes: "172.17.0.2:80", "[fd00::2]:80", "10.0.0.10-10.0.0.12:7000"
    table: str  # the table holding the rule: "ip nat", "inet netavark", ...

    @property
    def family(self) -> int:
        """The IP version of the target address (6 for a bracketed or colon-bearing address)."""
        host = self.to.rpartition(":")[0] if not self.to.startswith("[") else self.to
        return 6 if self.to.startswith("[") or ":" in host else 4


@dataclass(frozen=True)
class PublishedPorts:
    """The published ports found, and notes on rules only partly listed."""

    ports: tuple[PublishedPort, ...] = ()
    notes: tuple[str, ...] = ()


def parse_ruleset_listing(listing: str, skip_tables: Iterable[str] = ()) -> PublishedPorts:
    """Pure: the DNAT-published ports in nft's text listing, except portguard's own table."""
    skipped = {OWN_TABLE, *skip_tables}
    ports: list[PublishedPort] = []
    notes: list[str] = []
    table: str | None = None
    chain_rules: list[str] = []
    chain_hook: str | None = None

    def flush_chain() -> None:
        if table is not None and table not in skipped and chain_hook != "output":
            for rule in chain_rules:
                _rule_ports(rule, table, ports, notes)

    for line in listing.splitlines():
        depth = len(line) - len(line.lstrip("\t"))
        text = line.strip()
        if depth == 0:
            match = TABLE_LINE.match(text)
            if match is not None or text == "}":
                flush_chain()
                chain_rules, chain_hook = [], None
                table = f"{match.group(1)} {match.group(2)}" if match is not None else None
        elif depth == 1 and text.startswith("chain ") and text.endswith("{"):
            flush_chain()
            chain_rules, chain_hook = [], None
        elif depth == 2 and text:
            hook = CHAIN_HOOK.search(text)
            if hook is not None and text.startswith("type "):
                chain_hook = hook.group(1)
            else:
                chain_rules.append(text)
    flush_chain()
    return PublishedPorts(_unique(ports), tuple(notes))


def parse_save(save_text: str, family: str) -> PublishedPorts:
    """Pure: the DNAT-published ports in `iptables-nft-save -t nat` output (`family` ip|ip6)."""
    ports: list[PublishedPort] = []
    notes: list[str] = []
    in_nat = False
    table = f"{family} nat"
    for line in save_text.splitlines():
        if line.startswith("*"):
            in_nat = line == "*nat"
            continue
        match = SAVE_RULE.match(line)
        if not in_nat or match is None or match.group(1) == "OUTPUT":
            continue
        rule = match.group(2)
        dnat = SAVE_DNAT.search(rule)
        proto = SAVE_PROTO.search(rule)
        dport = SAVE_DPORT.search(rule)
        if dnat is None or proto is None or dport is None or proto.group(1) or dport.group(1):
            continue
        values = dport.group(2).replace(":", "-").split(",")
        found, note = _expand(
            (Proto(proto.group(2)),), values, dnat.group(1), table=table, rule=rule
        )
        ports.extend(found)
        notes.extend([note] if note else [])
    return PublishedPorts(_unique(ports), tuple(notes))


def read_published(handle: Any = None) -> PublishedPorts:
    """Read the live ruleset once (NftablesUnavailable without root) and find published ports."""
    nft = handle if handle is not None else open_nftables()
    # Every table but portguard's, one by one: `list ruleset` (or `list tables`) makes
    # libnftables fetch the elements of portguard's sets too, a minute at a million.
    tables = table_names()
    commands = (
        ["list ruleset"]
        if tables is None
        else [f"list table {f} {n}" for f, n in tables if f"{f} {n}" != OWN_TABLE]
    )
    outputs: list[str] = []
    errors: list[str] = []
    nft.set_stateless_output(True)
    try:
        for command in commands:
            with _quiet_stderr():  # libxtables prints "XT target DNAT not found" on fd 2
                rc, output, error = nft.cmd(command)
            if rc != 0:
                return PublishedPorts(notes=(f"could not list the ruleset: {str(error).strip()}",))
            outputs.append(str(output))
            errors.append(str(error))
    finally:
        nft.set_stateless_output(False)
    output, error = "".join(outputs), "".join(errors)
    managed = {f"{m.group(1)} {m.group(2)}" for m in IPTABLES_NFT_WARNING.finditer(str(error))}
    from_save: list[PublishedPorts] = []
    read_by_save: set[str] = set()
    for family, tool in SAVE_TOOLS.items():
        if f"{family} nat" not in managed:
            continue
        save_text = _run_save(tool)
        if save_text is not None:
            from_save.append(parse_save(save_text, family))
            read_by_save.add(f"{family} nat")
    listed = parse_ruleset_listing(str(output), skip_tables=read_by_save)
    parts = [listed, *from_save]
    return PublishedPorts(
        _unique(p for part in parts for p in part.ports),
        tuple(n for part in parts for n in part.notes),
    )


def _run_save(tool: str) -> str | None:
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, "-t", "nat"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C libraries write there)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _rule_ports(rule: str, table: str, ports: list[PublishedPort], notes: list[str]) -> None:
    """Add the ports one listed rule publishes (none when its shape is not understood)."""
    body = rule.split(' comment "', 1)[0]
    dnat = DNAT.search(body)
    dport = DPORT.search(body)
    if dnat is None or dport is None or dport.group(2):
        return
    target = dnat.group(1)
    if target in ("tcp", "udp", "th", "ip", "ip6", "meta") or target.startswith(("@", "{")):
        return  # a map lookup (`dnat to tcp dport map {...}`): not followed
    kind = dport.group(1)
    if kind == "th":
        l4 = L4PROTO.search(body)
        names = l4.group(1).strip("{} ").split(",") if l4 is not None else ["tcp", "udp"]
        protos = tuple(Proto(n.strip()) for n in names if n.strip() in ("tcp", "udp"))
    else:
        protos = (Proto(kind),)
    values = [v.strip() for v in dport.group(3).strip("{} ").split(",")]
    found, note = _expand(protos, values, target, table=table, rule=rule)
    ports.extend(found)
    notes.extend([note] if note else [])


def _expand(
    protos: tuple[Proto, ...], values: list[str], target: str, *, table: str, rule: str
) -> tuple[list[PublishedPort], str | None]:
    """Port values ("80", "8000-8010") as ports, up to MAX_PORTS_PER_RULE, and a cap note."""
    numbers: list[int] = []
    total = 0
    for value in values:
        first, _, last = value.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            return [], None  # a service name or something else not understood
        low, high = int(first), int(last or first)
        total += max(high - low + 1, 0)
        numbers.extend(range(low, min(high, low + MAX_PORTS_PER_RULE) + 1))
    numbers = sorted(set(numbers))[:MAX_PORTS_PER_RULE]
    note = None
    if total > len(numbers):
        note = f"table {table}: listed {len(numbers)} of {total} ports of a rule: {rule.strip()}"
    found = [
        PublishedPort(proto, port, _target(target, port), table)
        for proto in protos
        for port in numbers
    ]
    return found, note


def _target(target: str, port: int) -> str:
    """`target` with the published port added when the rule keeps the port ("ADDR" → "ADDR:P")."""
    if target.startswith("["):
        return target if "]:" in target else f"{target}:{port}"
    if target.count(":") > 1:  # a bare IPv6 address
        return f"[{target}]:{port}"
    return target if ":" in target else f"{target}:{port}"


def _unique(ports: Iterable[PublishedPort]) -> tuple[PublishedPort, ...]:
    return tuple(dict.fromkeys(ports))
