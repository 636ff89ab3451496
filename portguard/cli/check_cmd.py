"""`portguard check POLICY`: validate, lint, and have the kernel parse the rendered rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.backends.nftables import NftablesUnavailable, dry_run
from portguard.cli.output import err, out, print_warnings
from portguard.cli.windows_cmds import on_windows
from portguard.policy import load_policy
from portguard.policy.load import require_linux_interfaces
from portguard.render.nftables import render_nftables, transaction

__all__ = ["register"]


def check(
    policy: Annotated[Path, typer.Argument(help="The policy file to check.")],
    kernel: Annotated[
        bool,
        typer.Option("--kernel/--no-kernel", help="Also have nftables parse the result (dry run)."),
    ] = True,
) -> int:
    """Validate and lint POLICY; as root, also dry-run the rendered rules in the kernel."""
    loaded = load_policy(policy)
    if not on_windows():
        require_linux_interfaces(loaded.policy)  # a Windows-only alias cannot work here
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    entries = len(loaded.policy.allow)
    count = loaded.warning_count
    summary = f"{policy}: ok ({entries} allow entr{'y' if entries == 1 else 'ies'}"
    summary += f", {count} warning{'' if count == 1 else 's'})"
    if not kernel:
        out(f"{summary}; kernel dry run not requested")
        return 0
    try:
        dry_run(transaction(render_nftables(loaded.policy)))
    except NftablesUnavailable as why:
        err(f"portguard: kernel dry run skipped: {why}")
        out(f"{summary}; kernel dry run skipped")
        return 0
    out(f"{summary}; kernel dry run passed")
    return 0


def register(app: typer.Typer) -> None:
    """Add `check` to the app."""
    app.command("check")(check)
