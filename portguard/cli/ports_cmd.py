"""`portguard ports [--policy POLICY]`: listening sockets, published ports, and verdicts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from portguard.backends.nftables import NftablesUnavailable
from portguard.cli.formats import TableFormat, TableFormatOption
from portguard.cli.output import err, out, print_warnings
from portguard.cli.tables import print_table
from portguard.facts import PublishedPort, listening_sockets, published_ports
from portguard.model import ListeningSocket
from portguard.plan import (
    PublishedPlan,
    SocketPlan,
    judge_published,
    judge_socket,
    published_json,
    reach_index,
    socket_json,
    trojan_name,
)
from portguard.policy import load_policy

__all__ = ["published_rows", "read_published_or_note", "register", "socket_rows"]

HEADERS = ("proto", "address", "port", "pid", "process", "exposed")
PUBLISHED_HEADERS = ("proto", "port", "to", "table")
PUBLISHED_TITLE = "Published ports (DNAT)"


def ports(
    policy: Annotated[
        Path | None,
        typer.Option("--policy", "-p", help="Judge each socket against this policy."),
    ] = None,
    output_format: TableFormatOption = TableFormat.TABLE,
) -> int:
    """List TCP listeners and bound UDP sockets with their processes (as netstat -anob)."""
    loaded = load_policy(policy) if policy is not None else None
    if loaded is not None:
        print_warnings(loaded.warnings, loaded.omitted_warnings)
    found = listening_sockets()
    published = read_published_or_note()
    sockets: Sequence[SocketPlan | ListeningSocket] = found
    forwarded: Sequence[PublishedPlan | PublishedPort] = published
    if loaded is not None:
        index = reach_index(loaded.policy)
        sockets = [judge_socket(loaded.policy, s, index) for s in found]
        forwarded = [judge_published(loaded.policy, p, index) for p in published]
    if output_format is TableFormat.JSON:
        data = {
            "sockets": [socket_json(s) for s in sockets],
            "published": [published_json(p) for p in forwarded],
        }
        out(json.dumps(data, indent=2))
        return 0
    extra = ("verdict", "note") if loaded is not None else ("note",)
    rows = socket_rows(sockets)
    title = f"{len(rows)} listening socket{'' if len(rows) == 1 else 's'}"
    print_table(title, (*HEADERS, *extra), rows)
    out("")
    published_headers = (*PUBLISHED_HEADERS, "verdict", "note") if loaded else PUBLISHED_HEADERS
    print_table(PUBLISHED_TITLE, published_headers, published_rows(forwarded))
    return 0


def read_published_or_note() -> tuple[PublishedPort, ...]:
    """The published ports; without root (or nftables) none, with a one-line note on stderr."""
    try:
        found = published_ports()
    except NftablesUnavailable as why:
        err(f"portguard: published ports not shown: {why}")
        return ()
    for note in found.notes:
        err(f"portguard: note: {note}")
    return found.ports


def published_rows(items: Sequence[PublishedPlan | PublishedPort]) -> list[list[str]]:
    """Table rows for plain or judged published ports: proto, port, to, table, ..."""
    rows: list[list[str]] = []
    for item in items:
        port = item.published if isinstance(item, PublishedPlan) else item
        row = [port.proto.value, str(port.port), port.to, port.table]
        if isinstance(item, PublishedPlan):
            row.append(item.verdict.value)
            only = item.allowed_by and not item.from_anywhere
            row.append("only from " + "; ".join(item.allowed_by) if only else "")
        rows.append(row)
    return rows


def socket_rows(items: Sequence[SocketPlan | ListeningSocket]) -> list[list[str]]:
    """Table rows for plain or judged sockets: proto, address, port, pid, process, ..."""
    rows: list[list[str]] = []
    for item in items:
        sock = item.socket if isinstance(item, SocketPlan) else item
        row = [
            sock.proto.value,
            str(sock.address),
            str(sock.port),
            str(sock.pid) if sock.pid is not None else "-",
            sock.process or "-",
            "yes" if sock.exposed else "no (loopback)",
        ]
        notes: list[str] = []
        if isinstance(item, SocketPlan):
            row.append(item.verdict.value)
            if item.allowed_by and not item.from_anywhere:
                notes.append("only from " + "; ".join(item.allowed_by))
        trojan = trojan_name(sock.port)
        if trojan:
            notes.append(f"trojan port ({trojan})")
        row.append(", ".join(notes))
        rows.append(row)
    return rows


def register(app: typer.Typer) -> None:
    """Add `ports` to the app."""
    app.command("ports")(ports)
