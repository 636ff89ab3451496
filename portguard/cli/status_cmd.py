"""`portguard status`: is the table loaded, and is it what portguard applied."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.backends.nftables import list_table
from portguard.cli import windows_cmds
from portguard.cli.output import out, print_warnings
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.drift import RulesetState, classify, unified_diff
from portguard.policy import load_policy
from portguard.render.nftables import render_nftables
from portguard.state import AppliedState

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
        typer.Option("--check", help="Exit 0 when in sync, 3 when drifted, differing or absent."),
    ] = False,
    state_dir: StateDirOption = None,
) -> int:
    """Say whether table inet portguard is loaded and matches what was applied."""
    rendered: str | None = None
    if policy is not None:
        loaded = load_policy(policy)
        print_warnings(loaded.warnings)
        if windows_cmds.on_windows():
            return windows_cmds.status_on_windows(loaded.policy, check=check)
        rendered = render_nftables(loaded.policy)
    elif windows_cmds.on_windows():
        return windows_cmds.status_on_windows(None, check=check)
    live = list_table()  # first: not root or no python-nftables is the error to report
    state = open_state_dir(state_dir)
    applied = state.read_applied()
    verdict = classify(rendered, applied, live)
    out(f"table inet portguard: {verdict}")
    details = _details(
        verdict,
        applied=applied,
        live=live,
        rendered=rendered,
        policy=policy,
        removed_at=state.read_removed_at(),
    )
    for line in details:
        out(line)
    if check:
        return EXIT_IN_SYNC if verdict is RulesetState.IN_SYNC else EXIT_DRIFT
    return 0


def _details(
    verdict: RulesetState,
    *,
    applied: AppliedState | None,
    live: str | None,
    rendered: str | None,
    policy: Path | None,
    removed_at: str | None,
) -> list[str]:
    """The human explanation under the one-word state."""
    if verdict is RulesetState.ABSENT:
        if removed_at is not None:
            return [f"removed by portguard at {removed_at}"]
        if applied is not None:
            return [f"applied from {applied.policy_path} at {applied.applied_at}, now missing"]
        return ["nothing applied yet"]
    assert live is not None
    if applied is None:
        return ["the table exists but portguard has no record of applying it"]
    lines = [f"applied from {applied.policy_path} at {applied.applied_at}"]
    if verdict is RulesetState.DRIFTED:
        lines.append("the live table was changed after portguard applied it:")
        lines.append(unified_diff(applied.listing, live, "applied", "live").rstrip("\n"))
    elif verdict is RulesetState.DIFFERS and rendered is not None:
        lines.append(f"{policy} renders differently from what was applied:")
        lines.append(unified_diff(applied.rendered, rendered, "applied", str(policy)).rstrip("\n"))
    return lines


def register(app: typer.Typer) -> None:
    """Add `status` to the app."""
    app.command("status")(status)
