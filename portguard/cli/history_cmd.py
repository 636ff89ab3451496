"""`portguard history`: the recorded rule changes, newest first (read-only, no root needed)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from portguard.cli.formats import TableFormat, TableFormatOption
from portguard.cli.output import out, printable
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.cli.tables import print_table
from portguard.history import History, HistoryEntry

__all__ = ["register"]

SHA_CHARS = 12


def history(
    output_format: TableFormatOption = TableFormat.TABLE,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many rows.")
    ] = 20,
    state_dir: StateDirOption = None,
) -> int:
    """List the rule changes portguard executed: apply, boot, fallback, revert, rollback, remove."""
    entries = History.of(open_state_dir(state_dir)).entries(limit)
    if output_format is TableFormat.JSON:
        out(json.dumps([_json(entry) for entry in entries], indent=2))
        return 0
    rows = [
        [
            str(e.id),
            e.at,
            e.action.value,
            printable(e.policy_path) or "-",
            e.policy_sha256[:SHA_CHARS] if e.policy_path else "-",
            printable(e.outcome),
        ]
        for e in entries
    ]
    print_table(
        "history (newest first)", ["id", "at", "action", "policy", "sha256", "outcome"], rows
    )
    return 0


def _json(entry: HistoryEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "at": entry.at,
        "action": entry.action.value,
        "policy_path": entry.policy_path,
        "policy_sha256": entry.policy_sha256,
        "digest": entry.digest,
        "outcome": entry.outcome,
    }


def register(app: typer.Typer) -> None:
    """Add `history` to the app."""
    app.command("history")(history)
