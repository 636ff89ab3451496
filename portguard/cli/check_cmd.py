"""`portguard check POLICY...`: validate, lint, and have the kernel parse the rendered rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.cli.output import err, out, print_warnings
from portguard.cli.windows_cmds import on_windows
from portguard.errors import PortguardError
from portguard.policy import load_policy
from portguard.policy.load import require_linux_interfaces

__all__ = ["register"]


def check(
    policies: Annotated[
        list[Path],
        typer.Argument(metavar="POLICY", help="The policy files to check (one or more)."),
    ],
    kernel: Annotated[
        bool,
        typer.Option("--kernel/--no-kernel", help="Also have nftables parse the result (dry run)."),
    ] = True,
) -> int:
    """Validate and lint each POLICY; as root, also dry-run the rendered rules in the kernel."""
    if len(policies) == 1:
        return _check_one(policies[0], kernel)  # an error is main()'s one line
    failed = 0
    for policy in policies:
        try:
            _check_one(policy, kernel)
        except PortguardError as error:
            err(error.prefix + " ".join(str(error).split()))
            failed += 1
    return 1 if failed else 0


def _check_one(policy: Path, kernel: bool) -> int:
    """Check one policy: 0, or raise a PortguardError (main makes it one line)."""
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
    # Only the dry run needs the renderer and nftables (not `check --no-kernel`).
    from portguard.backends.nftables import NftablesUnavailable, dry_run  # noqa: PLC0415
    from portguard.render.nftables import render_nftables, transaction  # noqa: PLC0415

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
