"""`portguard install` and `portguard uninstall`: the boot-time systemd units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.cli.completion_cmd import Shell, completion_script
from portguard.cli.output import out
from portguard.install import (
    SystemctlMode,
    SystemctlRun,
    default_executable,
    install,
    systemctl_mode,
    systemd_booted,
    uninstall,
)

__all__ = ["register"]

RootOption = Annotated[
    Path,
    typer.Option(
        "--root",
        help="Install under this directory instead of / (for images and tests).",
    ),
]
UninstallRootOption = Annotated[
    Path,
    typer.Option(
        "--root",
        help="Remove what was installed under this directory instead of / (images, tests).",
    ),
]
NoSystemctlOption = Annotated[
    bool,
    typer.Option("--no-systemctl", help="Only write or remove files; do not call systemctl."),
]


def install_command(
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy to put at /etc/portguard/policy.yaml (default: the bundled"
            " policies/default.yaml). An existing different policy is an error unless"
            " --replace-policy.",
        ),
    ] = None,
    replace_policy: Annotated[
        bool,
        typer.Option(
            "--replace-policy",
            help="Replace an existing /etc/portguard/policy.yaml with --policy"
            " (the old one is kept as policy.yaml.old).",
        ),
    ] = False,
    root: RootOption = Path("/"),
    executable: Annotated[
        str | None,
        typer.Option(
            "--executable",
            help="Path of portguard that the units run (default: the one running now).",
            show_default=False,
        ),
    ] = None,
    no_systemctl: NoSystemctlOption = False,
) -> int:
    """Install the systemd units that apply the policy at boot, and enable them.

    Also installs the man page portguard(1) and bash, zsh and fish completion under
    /usr/local/share. Nothing is applied now.
    """
    mode, why = systemctl_mode(root, skip=no_systemctl, booted=systemd_booted())
    scripts = tuple((shell.value, completion_script(shell)) for shell in Shell)
    report = install(
        root,
        executable or default_executable(),
        policy,
        mode,
        why,
        replace_policy=replace_policy,
        completions=scripts,
    )
    for unit in report.units:
        out(f"wrote {unit}")
    for doc in report.docs:
        out(f"wrote {doc}")
    out(f"units run {report.executable}")
    if report.policy_replaced is not None:
        out(f"replaced {report.policy} with {policy} (old one saved as {report.policy_replaced})")
    elif report.policy_created:
        out(f"created {report.policy} from {policy or 'the bundled default policy'}")
    elif policy is not None:
        out(f"{report.policy} already is {policy}")
    else:
        out(f"kept the existing {report.policy} (never overwritten)")
    _print_systemctl(report.systemctl, report.skip_reason)
    if report.mode is SystemctlMode.SKIP:
        out("enable on the booted system: systemctl enable portguard.service portguard.path")
    out(
        "nothing was applied now; the policy takes effect at the next boot,"
        " or now with: systemctl start portguard.service"
    )
    return 0


def uninstall_command(
    root: UninstallRootOption = Path("/"),
    no_systemctl: NoSystemctlOption = False,
) -> int:
    """Disable and remove the units; the policy file and the live rules stay as they are.

    The man page and the completions that install wrote go too.
    """
    mode, why = systemctl_mode(root, skip=no_systemctl, booted=systemd_booted())
    report = uninstall(root, mode, why)
    _print_systemctl(report.systemctl, report.skip_reason)
    for unit in report.removed:
        out(f"removed {unit}")
    for doc in report.docs_removed:
        out(f"removed {doc}")
    if not report.removed:
        out("no portguard units were installed")
    out(f"left {report.policy} and the state dir in place")
    out("left the live rules in force; `portguard remove` takes them away")
    return 0


def _print_systemctl(runs: tuple[SystemctlRun, ...], skip_reason: str | None) -> None:
    for run in runs:
        out(f"ran {' '.join(run.argv)}")
    if skip_reason is not None:
        out(f"systemctl not called: {skip_reason}")


def register(app: typer.Typer) -> None:
    """Add `install` and `uninstall` to the app."""
    app.command("install")(install_command)
    app.command("uninstall")(uninstall_command)
