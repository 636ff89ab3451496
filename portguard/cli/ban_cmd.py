"""`portguard ban`, `unban` and `bans`: runtime bans in the live table, no re-apply."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from portguard.backends.bans import Ban, BanError, NotBanned, duration_seconds, read_bans
from portguard.backends.nftables import open_kernel
from portguard.ban import ban, parse_target, unban
from portguard.cli.formats import TableFormat, TableFormatOption
from portguard.cli.output import out, print_warnings_text
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.lockout import parse_ssh_connection

__all__ = ["register"]


def ban_command(
    target: Annotated[str, typer.Argument(help="An IP address or CIDR network to ban.")],
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", "-t", help="Lift the ban after this long: 600, 90s, 10m, 1h, 7d."
        ),
    ] = None,
    comment: Annotated[
        str | None, typer.Option("--comment", "-c", help="Why (shown by 'portguard bans').")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Ban even if it cuts off your own SSH session.")
    ] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Drop every packet from ADDR|CIDR now (no re-apply); kept across re-applies."""
    network = parse_target(target)
    seconds = duration_seconds(timeout) if timeout is not None else None
    outcome, warnings = ban(
        open_kernel(),
        open_state_dir(state_dir),
        network,
        timeout_s=seconds,
        comment=comment,
        ssh=parse_ssh_connection(os.environ.get("SSH_CONNECTION")),
        force=force,
    )
    print_warnings_text(warnings)
    out(f"portguard: {outcome}")


def unban_command(
    target: Annotated[str, typer.Argument(help="The banned IP address or CIDR network.")],
    missing_ok: Annotated[
        bool,
        typer.Option("--missing-ok", help="Exit 0 when it is not banned (expired already)."),
    ] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Lift the ban on exactly ADDR|CIDR."""
    network = parse_target(target)
    try:
        outcome, warnings = unban(open_kernel(), open_state_dir(state_dir), network)
    except NotBanned as missing:
        if not missing_ok:
            raise
        out(f"portguard: {missing}")
        return
    print_warnings_text(warnings)
    out(f"portguard: {outcome}")


def bans_command(
    output_format: TableFormatOption = TableFormat.TABLE,
) -> None:
    """List the live bans, with the time each has left."""
    live = read_bans(open_kernel())
    if live is None:
        raise BanError("no portguard table with ban sets is loaded; nothing is banned")
    if output_format is TableFormat.JSON:
        out(json.dumps({"bans": [b.to_json() for b in live]}, indent=2))
        return
    if not live:
        out("no bans")
        return
    rows = [("address", "expires in", "comment"), *(_row(b) for b in live)]
    width = max(len(r[0]) for r in rows)
    left = max(len(r[1]) for r in rows)
    for address, expires, text in rows:
        out(f"{address:<{width}}  {expires:<{left}}  {text}".rstrip())


def _row(ban_: Ban) -> tuple[str, str, str]:
    expires = "never" if ban_.expires_ms is None else f"{ban_.expires_ms // 1000}s"
    return str(ban_.network), expires, ban_.comment or ""


def register(app: typer.Typer) -> None:
    """Add `ban`, `unban` and `bans` to the app."""
    app.command("ban")(ban_command)
    app.command("unban")(unban_command)
    app.command("bans")(bans_command)
