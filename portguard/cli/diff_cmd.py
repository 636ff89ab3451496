"""`portguard diff OLD NEW`: offline change review of two policies (no root needed)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from portguard.cli.output import out
from portguard.cli.tables import markdown_table, plain_table, print_table, wants_rich
from portguard.policy import load_policy
from portguard.policy_diff import PolicyDiff, SpaceChange, diff_json, diff_policies

__all__ = ["DiffFormat", "diff_markdown", "diff_text", "register"]

HEADERS = ("proto", "ports", "from", "interface")


class DiffFormat(StrEnum):
    """Output formats of `diff`."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


def diff(
    old: Annotated[Path, typer.Argument(help="The policy as it is.")],
    new: Annotated[Path, typer.Argument(help="The policy as proposed.")],
    output_format: Annotated[
        DiffFormat, typer.Option("--format", "-f", help="text, json or markdown.")
    ] = DiffFormat.TEXT,
) -> int:
    """Show the ports and sources NEW opens and closes against OLD, lint and rule changes."""
    old_loaded, new_loaded = load_policy(old), load_policy(new)
    result = diff_policies(
        old_loaded.policy, new_loaded.policy, old_loaded.warnings, new_loaded.warnings
    )
    if output_format is DiffFormat.JSON:
        out(json.dumps(diff_json(result), indent=2))
    elif output_format is DiffFormat.MARKDOWN:
        out(diff_markdown(result))
    elif wants_rich():
        print_table("Opened (newly allowed)", HEADERS, _rows(result.opened))
        print_table("Closed (newly blocked)", HEADERS, _rows(result.closed))
        if result.forwarded_change is not None:
            out(_forwarded_text(result))
        if result.settings:
            out(_settings_text(result))
        out(_lint_and_rules_text(result))
    else:
        out(diff_text(result))
    return 0


def _rows(changes: tuple[SpaceChange, ...]) -> list[tuple[str, ...]]:
    return [
        (c.proto.value, c.ports_text, ", ".join(c.sources), c.interface or "any") for c in changes
    ]


def _lint_lines(result: PolicyDiff) -> list[str]:
    return [f"+ {w}" for w in result.warnings_added] + [f"- {w}" for w in result.warnings_removed]


def diff_text(result: PolicyDiff) -> str:
    """The plain-text diff: opened, closed, lint changes, the rendered rules' diff."""
    blocks = [f"Policy diff: {result.old_path} -> {result.new_path}"]
    for title, changes in (
        ("Opened (newly allowed)", result.opened),
        ("Closed (newly blocked)", result.closed),
    ):
        rows = _rows(changes)
        blocks.append(f"{title}:\n" + (plain_table(HEADERS, rows) if rows else "  (none)"))
    if result.forwarded_change is not None:
        blocks.append(_forwarded_text(result))
    if result.settings:
        blocks.append(_settings_text(result))
    blocks.append(_lint_and_rules_text(result))
    return "\n\n".join(blocks)


def _settings_text(result: PolicyDiff) -> str:
    return "Settings:\n" + "\n".join(f"  {s}" for s in result.settings)


def _forwarded_text(result: PolicyDiff) -> str:
    change = result.forwarded_change
    return f"Published ports:\n  {change.summary}" if change is not None else ""


def _lint_and_rules_text(result: PolicyDiff) -> str:
    lint = _lint_lines(result)
    rules = result.ruleset_diff.rstrip("\n") or "  (no change)"
    return (
        "Lint warnings:\n"
        + ("\n".join(lint) if lint else "  (no change)")
        + f"\n\nRendered rules:\n{rules}"
    )


def diff_markdown(result: PolicyDiff) -> str:
    """The diff as markdown, fit to paste into a pull request."""
    blocks = [f"## portguard diff: `{result.old_path}` → `{result.new_path}`"]
    for title, changes in (
        ("Opened (newly allowed)", result.opened),
        ("Closed (newly blocked)", result.closed),
    ):
        rows = _rows(changes)
        blocks.append(f"### {title}\n\n" + (markdown_table(HEADERS, rows) if rows else "_none_"))
    if result.forwarded_change is not None:
        blocks.append(f"### Published ports\n\n{result.forwarded_change.summary}")
    if result.settings:
        blocks.append("### Settings\n\n" + "\n".join(f"- `{s}`" for s in result.settings))
    lint = _lint_lines(result)
    blocks.append(
        "### Lint warnings\n\n"
        + ("\n".join(f"- `{line}`" for line in lint) if lint else "_no change_")
    )
    rules = result.ruleset_diff.rstrip()
    blocks.append("### Rendered rules\n\n" + (f"```diff\n{rules}\n```" if rules else "_no change_"))
    return "\n\n".join(blocks)


def register(app: typer.Typer) -> None:
    """Add `diff` to the app."""
    app.command("diff")(diff)
