"""apply, status and remove on Windows: the same commands, the Windows Firewall backend.

`on_windows()` is asked by every run of apply, check, status and remove, so the Windows
back end and renderer are imported by the functions that use them, not by this module.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from portguard.cli.output import err, out

if TYPE_CHECKING:
    from portguard.backends.windows import Runner
    from portguard.model import Policy

__all__ = [
    "apply_on_windows",
    "on_windows",
    "remove_on_windows",
    "status_on_windows",
    "windows_runner",
]

EXIT_DRIFT = 3


def on_windows() -> bool:
    """Whether this is a Windows host (Windows Firewall instead of nftables)."""
    return sys.platform == "win32"


def windows_runner() -> Runner:
    """The runner that executes PowerShell scripts on this host."""
    from portguard.backends.windows import PowerShellRunner  # noqa: PLC0415 - Windows only

    return PowerShellRunner()


def apply_on_windows(path: Path, policy: Policy) -> int:
    """Make the portguard rule group hold exactly `policy`'s rules and say what changed.

    What Windows Firewall cannot express (limit, reject, log, forwarded ...) is said first,
    one `note:` line each on stderr, as `render` writes them into the script.
    """
    from portguard.backends.windows import apply_windows  # noqa: PLC0415 - Windows only
    from portguard.render.windows_rules import build_windows_rules  # noqa: PLC0415

    for note in build_windows_rules(policy).notes:
        err(f"portguard: note: {note}")
    result = apply_windows(policy, windows_runner())
    if result.changed:
        out(
            f"{path}: applied as Windows Firewall generation {result.generation}"
            f" ({result.added} rules added, {result.removed} removed)"
        )
    else:
        out(f"{path}: unchanged, nothing to do")
    for cause in result.warnings:
        err(f"portguard: warning: {cause}")  # profiles or Group Policy that undo the rules
    return 0


def status_on_windows(policy: Policy | None, *, check: bool) -> int:
    """Report the portguard rule group; with a policy, whether it holds exactly its rules."""
    from portguard.backends.windows import SyncState, read_firewall, windows_status  # noqa: PLC0415
    from portguard.backends.windows_live import profile_causes  # noqa: PLC0415 - Windows only

    runner = windows_runner()
    if policy is None:
        live = read_firewall(runner)
        out(
            f"Windows Firewall group portguard: {len(live.rules)} rules" if live.rules else "absent"
        )
        causes = profile_causes(live.profiles)
        for cause in causes:
            out(f"  {cause}")
        return EXIT_DRIFT if check and (causes or not live.rules) else 0
    status = windows_status(policy, runner)
    out(f"Windows Firewall group portguard: {status.state}")
    for cause in status.causes:
        out(f"  {cause}")
    return EXIT_DRIFT if check and status.state is not SyncState.IN_SYNC else 0


def remove_on_windows() -> int:
    """Delete every rule in the portguard group, and nothing else."""
    from portguard.backends.windows import remove_windows  # noqa: PLC0415 - Windows only

    removed = remove_windows(windows_runner())
    out(f"removed {removed} portguard rules" if removed else "no portguard rules; nothing to do")
    return 0
