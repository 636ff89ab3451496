"""`portguard render POLICY [--target ...]`: print what apply would load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from portguard.cli.output import out, print_warnings
from portguard.model import Policy
from portguard.policy import load_policy
from portguard.render.netsh import render_netsh
from portguard.render.nftables import render_nftables
from portguard.render.powershell import render_powershell
from portguard.render.windivert import render_windivert

__all__ = ["Target", "register"]


class Target(StrEnum):
    """What to render for."""

    NFTABLES = "nftables"
    NETSH = "netsh"
    POWERSHELL = "powershell"
    WINDIVERT = "windivert"


RENDERERS: Mapping[Target, Callable[[Policy], str]] = MappingProxyType(
    {
        Target.NFTABLES: render_nftables,
        Target.NETSH: render_netsh,
        Target.POWERSHELL: render_powershell,
        Target.WINDIVERT: render_windivert,
    }
)


def render(
    policy: Annotated[Path, typer.Argument(help="The policy file to render.")],
    target: Annotated[
        Target, typer.Option("--target", "-t", help="Ruleset dialect.")
    ] = Target.NFTABLES,
) -> int:
    """Print the ruleset POLICY renders to, for TARGET (nothing is applied)."""
    loaded = load_policy(policy)
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    out(RENDERERS[target](loaded.policy).rstrip("\n"))
    return 0


def register(app: typer.Typer) -> None:
    """Add `render` to the app."""
    app.command("render")(render)
