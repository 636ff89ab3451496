"""`portguard render POLICY [--target ...]`: print what apply would load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from importlib import import_module
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from portguard.cli.output import out, print_warnings
from portguard.model import Policy
from portguard.policy import load_policy

__all__ = ["Target", "register", "renderer"]


class Target(StrEnum):
    """What to render for."""

    NFTABLES = "nftables"
    NETSH = "netsh"
    POWERSHELL = "powershell"
    WINDIVERT = "windivert"


# Each target's renderer as (module, function): a run imports only the one it asked for.
RENDERERS: Mapping[Target, tuple[str, str]] = MappingProxyType(
    {
        Target.NFTABLES: ("portguard.render.nftables", "render_nftables"),
        Target.NETSH: ("portguard.render.netsh", "render_netsh"),
        Target.POWERSHELL: ("portguard.render.powershell", "render_powershell"),
        Target.WINDIVERT: ("portguard.render.windivert", "render_windivert"),
    }
)


def renderer(target: Target) -> Callable[[Policy], str]:
    """The function that renders a policy for `target`."""
    module, name = RENDERERS[target]
    found: Callable[[Policy], str] = getattr(import_module(module), name)
    return found


def render(
    policy: Annotated[Path, typer.Argument(help="The policy file to render.")],
    target: Annotated[
        Target, typer.Option("--target", "-t", help="Ruleset dialect.")
    ] = Target.NFTABLES,
) -> int:
    """Print the ruleset POLICY renders to, for TARGET (nothing is applied)."""
    loaded = load_policy(policy)
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    out(renderer(target)(loaded.policy).rstrip("\n"))
    return 0


def register(app: typer.Typer) -> None:
    """Add `render` to the app."""
    app.command("render")(render)
