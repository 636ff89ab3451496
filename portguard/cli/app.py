"""The typer app, its command registry, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import import_module
from types import MappingProxyType
from typing import Annotated

import typer

from portguard import __version__
from portguard.cli.native import CONTEXT_SETTINGS, NativeGroup, enable_completion_if_asked
from portguard.errors import PortguardError

__all__ = [
    "COMMAND_MODULES",
    "EXIT_CHANGES",
    "EXIT_DRIFT",
    "EXIT_ERROR",
    "EXIT_OK",
    "build_app",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_DRIFT = 3

# Each command's module (one line per command, in --help order); a run imports only the
# module of the command it names, so start-up does not pay for the other nine.
COMMAND_MODULES = MappingProxyType(
    {
        "check": "check_cmd",
        "render": "render_cmd",
        "apply": "apply_cmd",
        "confirm": "confirm_cmd",
        "revert-at-deadline": "confirm_cmd",  # confirm.REVERTER_COMMAND (hidden)
        "status": "status_cmd",
        "history": "history_cmd",
        "show": "show_cmd",
        "remove": "remove_cmd",
        "rollback": "rollback_cmd",
        "install": "install_cmd",
        "uninstall": "install_cmd",
        "ports": "ports_cmd",
        "plan": "plan_cmd",
        "diff": "diff_cmd",
        "enforce": "enforce_cmd",
        "ban": "ban_cmd",
        "unban": "ban_cmd",
        "bans": "ban_cmd",
        "stats": "stats_cmd",
        "log": "log_cmd",
        "completion": "completion_cmd",
        "schema": "schema_cmd",
        "services": "services_cmd",
    }
)


def _print_version(value: bool) -> None:
    if value:
        print(f"portguard {__version__}")
        raise typer.Exit(0)


def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Enforce a YAML allow-list of inbound ports with nftables or Windows Firewall.

    Start with `portguard check POLICY`, then `portguard plan POLICY`, then
    `portguard apply --confirm 120 POLICY`. `portguard COMMAND -h` shows each command.

    Exit codes: 0 ok; 1 error; 2 changes pending (plan --detailed-exitcode);
    3 drift (status --check).
    """


def build_app(command: str | None = None, *, every: bool = True) -> typer.Typer:
    """The typer app with `command`'s module registered; else every module, or none (every=False).

    None is for a command line that names no command: one that may show the command list
    (help, completion) needs every module; `--version` needs none.
    """
    app = typer.Typer(
        name="portguard",
        no_args_is_help=True,
        add_completion=False,  # `portguard completion SHELL` and `install` provide it instead
        pretty_exceptions_enable=False,
        # Help in rich panels on a terminal; piped (| less, | grep, scripts), click's plain
        # text, without importing rich (~50 ms), like tables.py's tables.
        rich_markup_mode="rich" if sys.stdout.isatty() else None,
        cls=NativeGroup,
        context_settings=CONTEXT_SETTINGS,
    )
    app.callback()(_root)
    one = COMMAND_MODULES.get(command or "")
    every_module = tuple(dict.fromkeys(COMMAND_MODULES.values())) if every else ()
    for name in every_module if one is None else (one,):
        import_module(f"portguard.cli.{name}").register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    """`app`: the whole app with every command, built when first asked for."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


def _command_name(args: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def _lists_commands(args: Sequence[str]) -> bool:
    """Whether a command line that names no command shows the command list (help)."""
    return not args or "-h" in args or "--help" in args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every failure is one line on stderr and exit status 1 (no traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    completing = enable_completion_if_asked()
    command = _command_name(args)
    try:
        app = build_app(command, every=command is not None or completing or _lists_commands(args))
        result = app(args=args, prog_name="portguard", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("portguard: aborted", file=sys.stderr)
        return EXIT_ERROR
    except typer.TyperException as usage:  # usage errors exit 1, not click's 2 (2 = changes)
        _report_usage_error(usage)
        return EXIT_ERROR
    except PortguardError as error:
        if debug:
            raise
        print(error.prefix + _one_line(str(error)), file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        if debug:
            raise
        print(
            f"portguard: internal error: {type(error).__name__}: {_one_line(str(error))}"
            " (rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return result if isinstance(result, int) else EXIT_OK


def _report_usage_error(usage: typer.TyperException) -> None:
    """A usage error as one stderr line; a bare command (no arguments) shows its help."""
    show = getattr(usage, "show", None)
    if type(usage).__name__ == "NoArgsIsHelpError" and callable(show):
        show()
        return
    context = getattr(usage, "ctx", None)
    command = getattr(context, "command_path", None) or "portguard"
    message = _one_line(usage.format_message())
    print(f"{command}: {message} (see '{command} --help')", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text else text
