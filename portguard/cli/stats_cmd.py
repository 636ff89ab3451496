"""`portguard stats`: what each allow entry accepted, what was blocked, the bans."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from portguard.apply import gather_facts
from portguard.backends.bans import read_bans
from portguard.backends.nftables import open_kernel
from portguard.cli.output import out, print_warnings_text
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.drift import RulesetState, classify
from portguard.errors import PortguardError
from portguard.facts.counters import read_counters
from portguard.model import Policy
from portguard.policy import parse_policy
from portguard.state import AppliedState
from portguard.stats import (
    TOP_PORTS,
    Stats,
    StatsBaseline,
    build_stats,
    prometheus_text,
    stats_json,
)
from portguard.stats_store import read_baseline, write_atomically, write_baseline

__all__ = ["register"]


class StatsFormat(StrEnum):
    """Output formats of `stats`."""

    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"


def stats(
    output_format: Annotated[
        StatsFormat, typer.Option("--format", "-f", help="table, json or prometheus.")
    ] = StatsFormat.TABLE,
    reset: Annotated[
        bool, typer.Option("--reset", help="Count from zero from now on (a baseline is kept).")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE atomically (node_exporter textfile)."),
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Show new connections accepted per allow entry, blocked ports, denied and banned."""
    kernel = open_kernel()
    state = open_state_dir(state_dir)
    facts = gather_facts(kernel, state)
    counters = read_counters(kernel)
    if counters is None or facts.live is None:
        raise PortguardError("no portguard table is loaded; nothing has been counted")
    digest = facts.live.marker or ""
    if reset:
        write_baseline(state.path, StatsBaseline.of(digest, counters))
        out("portguard: counters reset (stats now count from zero)")
        return
    baseline = read_baseline(state.path)
    if baseline is not None and baseline.digest == digest:
        counters = baseline.subtract(counters)
    applied = facts.records.applied
    policy, warnings = _policy(applied)
    print_warnings_text([*facts.records.warnings, *warnings])
    bans = read_bans(kernel) or ()
    result = build_stats(
        policy,
        counters,
        bans=len(bans),
        in_sync=classify(None, facts.records, facts.live) is RulesetState.IN_SYNC,
        last_apply=_timestamp(applied),
    )
    if output_format is StatsFormat.PROMETHEUS:
        text = prometheus_text(result)
    elif output_format is StatsFormat.JSON:
        text = json.dumps(stats_json(result), indent=2) + "\n"
    else:
        text = _table(result)
    if output is not None:
        write_atomically(output, text)
    else:
        out(text.rstrip("\n"))


def _policy(applied: AppliedState | None) -> tuple[Policy | None, list[str]]:
    """The applied policy, parsed again for its entries' lines and comments."""
    if applied is None:
        return None, ["no applied record: counts are shown without their entries"]
    try:
        loaded = parse_policy(
            applied.policy_text, applied.policy_path, base_dir=Path(applied.policy_path).parent
        )
    except PortguardError as error:
        return None, [f"the applied policy cannot be read again ({error}); entries not shown"]
    return loaded.policy, []


def _timestamp(applied: AppliedState | None) -> float | None:
    if applied is None:
        return None
    try:
        return datetime.fromisoformat(applied.applied_at).timestamp()
    except ValueError:
        return None


def _table(result: Stats) -> str:
    """The human-readable report."""
    rows = [("line", "proto", "ports", "new conns", "bytes", "comment")]
    for e in result.entries:
        shared = f" (rule shared with line {', '.join(map(str, e.shared_with))})"
        comment = (e.comment or "") + (shared if e.shared_with else "")
        rows.append((str(e.line), e.proto, e.ports, str(e.packets), str(e.bytes), comment))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + "  " + r[5] for r in rows
    ]
    lines = [line.rstrip() for line in lines]
    lines.append("")
    lines.append(f"blocked new packets (default verdict): {result.dropped_packets}")
    for proto, port, packets in result.dropped_by_port[:TOP_PORTS]:
        lines.append(f"  {proto}/{port}: {packets}")
    lines.append(f"denied (deny:): {result.denied_packets}")
    lines.append(f"banned: {result.banned_packets} packets, {result.bans} bans in force")
    lines.append(f"in sync: {'yes' if result.in_sync else 'no'}")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    """Add `stats` to the app."""
    app.command("stats")(stats)
