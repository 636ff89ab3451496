"""`portguard status`: is the table loaded, and is it what portguard applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from portguard.apply import RulesetFacts, gather_facts
from portguard.backends.nftables import open_kernel
from portguard.cli import windows_cmds
from portguard.cli.formats import TextFormat, TextFormatOption
from portguard.cli.output import out, print_warnings, print_warnings_text, printable
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.confirm import PendingConfirm, read_confirm
from portguard.drift import RulesetState, classify, table_in_force, unified_diff, unrecorded
from portguard.policy import load_policy
from portguard.render.nft_table import NftTable
from portguard.render.nftables import render_table
from portguard.state import Action, StateDir, StateError

__all__ = ["register"]

EXIT_IN_SYNC = 0
EXIT_DRIFT = 3


def status(
    policy: Annotated[
        Path | None,
        typer.Option("--policy", "-p", help="Also compare with what this policy renders to."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 0 when in sync, 3 when drifted, differing or absent, or when"
            " last-known-good is in force after a boot fallback.",
        ),
    ] = False,
    output_format: TextFormatOption = TextFormat.TEXT,
    state_dir: StateDirOption = None,
) -> int:
    """Say whether table inet portguard is loaded and matches what was applied."""
    rendering: NftTable | None = None
    if policy is not None:
        loaded = load_policy(policy)
        print_warnings(loaded.warnings, loaded.omitted_warnings)
        if windows_cmds.on_windows():
            return windows_cmds.status_on_windows(loaded.policy, check=check)
        rendering = render_table(loaded.policy)
    elif windows_cmds.on_windows():
        return windows_cmds.status_on_windows(None, check=check)
    kernel = open_kernel()  # first: not root or no python-nftables is the error to report
    state = open_state_dir(state_dir)
    facts = gather_facts(kernel, state)
    verdict = classify(rendering, facts.records, facts.live)
    awaiting, confirm_warnings = _awaiting_confirm(state)
    warnings = [*facts.records.warnings, *confirm_warnings]
    applied = facts.records.applied
    fell_back = applied is not None and applied.source is Action.BOOT_FALLBACK
    if output_format is TextFormat.JSON:
        out(json.dumps(_json(verdict, facts, awaiting, warnings), indent=2))
    else:
        print_warnings_text(warnings)
        out(f"table inet portguard: {verdict}")
        for line in _details(verdict, facts, rendering, policy):
            out(line)
        if fell_back and applied is not None:
            out(
                "last-known-good is in force after a boot fallback: the policy file at"
                f" {printable(applied.policy_path)} could not be used (fix it, then apply it)"
            )
        if awaiting is not None:
            out(
                f"awaiting confirmation: the previous rules come back at {awaiting.deadline}"
                " unless `portguard confirm` runs"
            )
    if check:
        return EXIT_IN_SYNC if verdict is RulesetState.IN_SYNC and not fell_back else EXIT_DRIFT
    return 0


def _awaiting_confirm(state: StateDir) -> tuple[PendingConfirm | None, list[str]]:
    """The pending `apply --confirm`, if any (a damaged record is a warning)."""
    try:
        return read_confirm(state), []
    except StateError as error:
        return None, [f"{error} (ignored)"]


def _json(
    verdict: RulesetState,
    facts: RulesetFacts,
    awaiting: PendingConfirm | None,
    warnings: list[str],
) -> dict[str, object]:
    """`status --format json`: the state, the record in force, a pending confirm, warnings."""
    applied = facts.records.applied
    pending = facts.records.pending
    return {
        "state": verdict.value,
        "policy_path": None if applied is None else applied.policy_path,
        "applied_at": None if applied is None else applied.applied_at,
        "source": None if applied is None else applied.source.value,
        "boot_fallback": applied is not None and applied.source is Action.BOOT_FALLBACK,
        "removed_at": facts.records.removed_at,
        "unrecorded_apply": (
            pending.policy_path
            if pending is not None and unrecorded(facts.records, facts.live)
            else None
        ),
        "pending_confirm": None if awaiting is None else awaiting.deadline,
        "warnings": warnings,
    }


def _details(
    verdict: RulesetState, facts: RulesetFacts, rendering: NftTable | None, policy: Path | None
) -> list[str]:
    """The human explanation under the one-word state (control characters escaped)."""
    records, live = facts.records, facts.live
    applied = records.applied
    lines: list[str] = []
    if verdict is RulesetState.ABSENT:
        if records.removed_at is not None:
            lines.append(f"removed by portguard at {records.removed_at}")
        elif applied is not None:
            lines.append(
                f"applied from {printable(applied.policy_path)} at {applied.applied_at},"
                " now missing"
            )
        else:
            lines.append("nothing applied yet")
    elif unrecorded(records, live) and records.pending is not None:
        lines.append(
            f"in force: {printable(records.pending.policy_path)}, from an apply begun at"
            f" {records.pending.started_at} that was interrupted before its record was"
            " written (the next apply records it)"
        )
    elif verdict is RulesetState.DRIFTED:
        assert live is not None
        if applied is None:
            lines.append("the table exists but portguard has no record of applying it")
        else:
            lines.append(f"applied from {printable(applied.policy_path)} at {applied.applied_at}")
            lines.append("the live table was changed after portguard applied it:")
            recorded = applied.rendered if applied.listing is None else applied.listing
            lines.append(unified_diff(recorded, live.listing or "", "applied", "live").rstrip())
    elif applied is not None:
        lines.append(f"applied from {printable(applied.policy_path)} at {applied.applied_at}")
    if verdict is RulesetState.DIFFERS and rendering is not None:
        in_force = table_in_force(records, live)
        assert in_force is not None
        lines.append(f"{printable(str(policy))} renders differently from what is in force:")
        diff = unified_diff(in_force.text(), rendering.text(), "in force", str(policy))
        lines.append(diff.rstrip("\n"))
    if live is not None and live.leftover_sets:
        lines.append(
            f"{len(live.leftover_sets)} unused set(s) left by an interrupted apply"
            f" ({', '.join(live.leftover_sets)}); they filter nothing, the next apply removes them"
        )
    pending = records.pending
    if pending is not None:
        if pending.table is None:
            went_through = verdict is RulesetState.ABSENT
            what = "a removal"
        else:
            went_through = table_in_force(records, live) == pending.table
            what = f"an apply of {printable(pending.policy_path)}"
        if not went_through:
            lines.append(f"{what} begun at {pending.started_at} did not complete; not in force")
    return lines


def register(app: typer.Typer) -> None:
    """Add `status` to the app."""
    app.command("status")(status)
