"""`portguard services`: the built-in service profiles that `service:` can name."""

from __future__ import annotations

import json

import typer

from portguard.cli.formats import TableFormat, TableFormatOption
from portguard.cli.output import out
from portguard.cli.tables import print_table
from portguard.model import Proto
from portguard.service_profiles import PROFILES
from portguard.services import load_services

__all__ = ["register"]

HEADERS = ("SERVICE", "TCP", "UDP", "DESCRIPTION")


def services(
    output_format: TableFormatOption = TableFormat.TABLE,
) -> int:
    """List the built-in service profiles (multi-port, multi-protocol) for `service:`.

    Any other name is looked up in /etc/services (tcp unless the entry sets proto).
    """
    if output_format is TableFormat.JSON:
        listing = {
            name: {
                "description": p.description,
                **{proto.value: [str(r) for r in p.ports(proto)] for proto in Proto},
            }
            for name, p in sorted(PROFILES.items())
        }
        out(json.dumps(listing, indent=2))
        return 0
    rows = [
        (
            name,
            ",".join(str(r) for r in p.tcp) or "-",
            ",".join(str(r) for r in p.udp) or "-",
            p.description,
        )
        for name, p in sorted(PROFILES.items())
    ]
    print_table(f"{len(rows)} built-in service profiles", HEADERS, rows)
    table = load_services()
    out(f"other names: {table.source} ({len({n for n, _ in table.ports})} names)")
    return 0


def register(app: typer.Typer) -> None:
    """Add `services` to the app."""
    app.command("services")(services)
