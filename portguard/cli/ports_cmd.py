"""`portguard ports [--policy POLICY]`: listening sockets, their owners, and the verdict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from portguard.cli.output import out, print_warnings
from portguard.cli.tables import print_table
from portguard.facts import listening_sockets
from portguard.model import ListeningSocket
from portguard.plan import SocketPlan, judge_socket, socket_json, trojan_name
from portguard.policy import load_policy

__all__ = ["PortsFormat", "register", "socket_rows"]

HEADERS = ("proto", "address", "port", "pid", "process", "exposed")


class PortsFormat(StrEnum):
    """Output formats of `ports`."""

    TABLE = "table"
    JSON = "json"


def ports(
    policy: Annotated[
        Path | None,
        typer.Option("--policy", "-p", help="Judge each socket against this policy."),
    ] = None,
    output_format: Annotated[
        PortsFormat, typer.Option("--format", "-f", help="table or json.")
    ] = PortsFormat.TABLE,
) -> int:
    """List TCP listeners and bound UDP sockets with their processes (as netstat -anob)."""
    loaded = load_policy(policy) if policy is not None else None
    if loaded is not None:
        print_warnings(loaded.warnings, loaded.omitted_warnings)
    found = listening_sockets()
    judged = [judge_socket(loaded.policy, s) for s in found] if loaded is not None else None
    if output_format is PortsFormat.JSON:
        items = judged if judged is not None else found
        out(json.dumps([socket_json(s) for s in items], indent=2))
        return 0
    headers = (*HEADERS, "verdict", "note") if judged is not None else (*HEADERS, "note")
    rows = socket_rows(judged if judged is not None else found)
    print_table(f"{len(rows)} listening socket{'' if len(rows) == 1 else 's'}", headers, rows)
    return 0


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
