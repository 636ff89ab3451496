"""portguard(1) in roff, generated from the CLI itself (`python -m portguard.cli.manpage`).

The committed page is man/portguard.1; a test regenerates it and fails when they differ.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import typer
from typer.core import TyperArgument, TyperOption

from portguard import __version__
from portguard.cli.help_text import EPILOGS

__all__ = ["manpage"]

DATE = "2026-12-01"  # fixed, so that the page is reproducible
EXIT_CODES = (
    ("0", "Success; for plan --detailed-exitcode: no changes."),
    (
        "1",
        "Error: bad input (one line naming file:line:col), refused, or failed; host rules"
        " unchanged.",
    ),
    ("2", "Changes pending (plan and diff with --detailed-exitcode)."),
    ("3", "Drift: the live table differs from what portguard applied (status --check)."),
)
FILES = (
    ("/etc/portguard/policy.yaml", "The policy the systemd units apply at boot."),
    (
        "/var/lib/portguard",
        "State: what was applied, history, last-known-good (PORTGUARD_STATE_DIR).",
    ),
    ("/etc/systemd/system/portguard.service", "Applies the policy at boot (portguard install)."),
    ("/etc/systemd/system/portguard.path", "Re-applies when the policy file changes."),
)


def _roff(text: str) -> str:
    """Text escaped for roff: backslashes, leading dots and quotes, hyphens in words."""
    text = text.replace("\\", "\\e").replace("-", "\\-").replace("`", "")
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        lines.append("\\&" + stripped if stripped.startswith((".", "'")) else stripped)
    return "\n".join(lines)


def _paragraphs(text: str) -> Iterator[str]:
    """The paragraphs of a docstring, each joined to one line."""
    for block in inspect.cleandoc(text).split("\n\n"):
        joined = " ".join(block.split())
        if joined:
            yield joined


def _value_label(param: TyperOption, ctx: typer.Context) -> str:
    """PATH, SECONDS, {text|json}: what the option's value looks like."""
    if param.metavar:
        return param.metavar
    # How typer's help shows the type: <path>, <float range>, <text|json>.
    shown = (param.type.get_metavar(param=param, ctx=ctx) or param.type.name).strip("<>")
    if "|" in shown:
        return "{" + shown + "}"
    return shown.split(" ")[0].upper() or (param.name or "value").upper()


def _option_label(param: TyperOption, ctx: typer.Context) -> str:
    every = [*param.opts, *param.secondary_opts]
    names = ", ".join(f"\\fB{_roff(name)}\\fR" for name in every)
    if param.is_flag:
        return names
    return f"{names} \\fI{_roff(_value_label(param, ctx))}\\fR"


def _usage(name: str, command: typer.core.TyperCommand, ctx: typer.Context) -> str:
    pieces = [f"\\fBportguard {name}\\fR", "[\\fIOPTIONS\\fR]"]
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            label = f"\\fI{(param.metavar or param.name or '').upper()}\\fR"
            label += "..." if param.nargs != 1 else ""
            bracketed = param.required or (param.metavar or "").startswith("[")
            pieces.append(label if bracketed else f"[{label}]")
    return " ".join(pieces)


def _command_section(name: str, command: typer.core.TyperCommand, parent: typer.Context) -> str:
    ctx = typer.Context(command, info_name=name, parent=parent)
    lines = [f".SS {name}", _usage(name, command, ctx), ".PP"]
    for paragraph in _paragraphs(command.help or ""):
        lines += [_roff(paragraph), ".PP"]
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and "--help" not in param.opts:
            lines += [".TP", _option_label(param, ctx), _roff(param.help or "")]
        elif isinstance(param, TyperArgument):
            label = (param.metavar or param.name or "").upper()
            lines += [".TP", f"\\fI{_roff(label)}\\fR", _roff(getattr(param, "help", "") or "")]
    found = EPILOGS.get(name)
    if found is not None:
        examples, codes = found
        lines += [".PP", "Examples:", ".RS", ".nf", *(_roff(e) for e in examples), ".fi", ".RE"]
        lines += [".PP", _roff(f"Exit codes: {codes}")]
    return "\n".join(lines)


def manpage() -> str:
    """The whole portguard(1) page for the current CLI."""
    from portguard.cli.app import app  # noqa: PLC0415 - the app imports every command

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="portguard")
    names = [
        name
        for name in group.list_commands(root)  # type: ignore[attr-defined]
        if not group.get_command(root, name).hidden  # type: ignore[attr-defined]
    ]
    sections = [
        f'.TH PORTGUARD 1 "{DATE}" "portguard {__version__}" "User Commands"',
        ".SH NAME",
        "portguard \\- enforce a YAML allow\\-list of inbound ports on the host firewall",
        ".SH SYNOPSIS",
        "\\fBportguard\\fR [\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
        ".br",
        "\\fBportguard\\fR \\fB\\-\\-version\\fR | \\fB\\-h\\fR",
        ".SH DESCRIPTION",
        *(f"{_roff(p)}\n.PP" for p in _paragraphs(group.help or "")),
        "Every command takes \\fB\\-h\\fR or \\fB\\-\\-help\\fR. Rules are only changed by"
        " apply, confirm's revert, rollback and remove, always atomically.",
        ".SH COMMANDS",
        *(_command_section(n, group.get_command(root, n), root) for n in names),  # type: ignore[attr-defined]
        ".SH EXIT STATUS",
        *(f".TP\n\\fB{code}\\fR\n{_roff(text)}" for code, text in EXIT_CODES),
        ".SH ENVIRONMENT",
        ".TP\n\\fBPORTGUARD_STATE_DIR\\fR\nState directory (default /var/lib/portguard).",
        ".TP\n\\fBNO_COLOR\\fR\nPlain tables even on a terminal.",
        ".SH FILES",
        *(f".TP\n\\fI{_roff(path)}\\fR\n{_roff(text)}" for path, text in FILES),
        ".SH SEE ALSO",
        "\\fBnft\\fR(8), \\fBsystemctl\\fR(1), \\fBufw\\fR(8), \\fBfirewalld\\fR(1)",
    ]
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
