"""`portguard completion SHELL`: the shell completion script (bash, zsh or fish)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from portguard.cli.native import COMPLETE_VAR
from portguard.cli.output import out

__all__ = ["Shell", "completion_script", "register"]


class Shell(StrEnum):
    """The shells portguard ships completion for."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion_script(shell: Shell) -> str:
    """The completion script for `shell`; it asks portguard itself for the candidates."""
    from typer._completion_shared import get_completion_script  # noqa: PLC0415 - rarely used

    script = get_completion_script(prog_name="portguard", complete_var=COMPLETE_VAR, shell=shell)
    return script.strip() + "\n"


def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> int:
    """Print the completion script for SHELL (`portguard install` also installs all three)."""
    out(completion_script(shell).rstrip("\n"))
    return 0


def register(app: typer.Typer) -> None:
    """Add `completion` to the app."""
    app.command("completion")(completion)
