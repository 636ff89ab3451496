"""Tables for the terminal: rich on a colour TTY, plain aligned text otherwise (stable)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from portguard.cli.output import out

__all__ = ["markdown_table", "plain_table", "print_table", "wants_rich"]


def wants_rich() -> bool:
    """Rich output only when stdout is a terminal and NO_COLOR is unset."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; '|' inside cells is escaped."""

    def cells(line: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *(cells(r) for r in rows)])


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a titled table: rich when wanted, else the title line and plain_table."""
    if wants_rich() and rows:
        from rich.console import Console  # noqa: PLC0415 - only for a terminal
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415 - cells are data, never markup

        table = Table(title=title, title_justify="left", header_style="bold")
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        Console().print(table)
        return
    out(title)
    out(plain_table(headers, rows) if rows else "  (none)")
