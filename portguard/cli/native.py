"""Help that reads like a native Unix tool: `-h`, `POLICY` in usage and the argument table.

typer shows a required argument as `{policy}` in the usage line and `policy` in the table;
these classes fix the display only, never the parsing.
"""

from __future__ import annotations

import os
from typing import Any

from typer import _click
from typer.core import TyperArgument, TyperCommand, TyperGroup

from portguard.cli.help_text import epilog

__all__ = [
    "COMPLETE_VAR",
    "CONTEXT_SETTINGS",
    "NativeCommand",
    "NativeGroup",
    "enable_completion_if_asked",
]

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
COMPLETE_VAR = "_PORTGUARD_COMPLETE"  # set by the completion scripts when a shell asks


def enable_completion_if_asked() -> bool:
    """Load typer's completion classes when a shell asks for candidates (the env var is set)."""
    if not os.environ.get(COMPLETE_VAR):
        return False
    from typer._completion_classes import completion_init  # noqa: PLC0415 - rarely

    completion_init()
    return True


def _native_params(params: list[Any]) -> None:
    """Arguments are named in capitals (POLICY)."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()


class NativeCommand(TyperCommand):
    """A command whose usage line and option table read like a man page's synopsis."""

    def get_params(self, ctx: _click.Context) -> list[Any]:
        """The parameters (help option included) with native display names."""
        params = super().get_params(ctx)
        _native_params(params)
        return params

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        """`[OPTIONS] POLICY` rather than `[OPTIONS] {policy}`."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required or name.startswith("[") else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class NativeGroup(TyperGroup):
    """The top-level group: its own options and every subcommand shown natively."""

    def get_params(self, ctx: _click.Context) -> list[Any]:
        """The group's parameters with native display names."""
        params = super().get_params(ctx)
        _native_params(params)
        return params

    def get_command(self, ctx: _click.Context, cmd_name: str) -> Any:
        """The subcommand, displayed as a NativeCommand (same object, parsing unchanged)."""
        command = super().get_command(ctx, cmd_name)
        if type(command) is TyperCommand:
            command.__class__ = NativeCommand  # display-only overrides, no new state
        if command is not None and command.epilog is None:
            command.epilog = epilog(cmd_name)
        return command
