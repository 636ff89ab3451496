"""Small helpers the commands share for writing to stdout and stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portguard.model import LintWarning

__all__ = [
    "err",
    "out",
    "print_warning_count",
    "print_warnings",
    "print_warnings_text",
    "printable",
]


def out(text: str) -> None:
    """Write a line to stdout."""
    print(text)


def err(text: str) -> None:
    """Write a line to stderr."""
    print(text, file=sys.stderr)


def print_warnings(warnings: Iterable[LintWarning], omitted: int = 0) -> None:
    """Every lint warning on stderr, one line each, then a count of those left out, if any."""
    for warning in warnings:
        err(str(warning))
    if omitted:
        err(f"portguard: \u2026 and {omitted} more warning{'' if omitted == 1 else 's'}")


def print_warning_count(count: int) -> None:
    """An unchanged re-apply names how many lint warnings there are, not each one again."""
    if count:
        err(f"portguard: {count} lint warning{'' if count == 1 else 's'} (see `portguard check`)")


def print_warnings_text(warnings: Iterable[str]) -> None:
    """Every state warning (a damaged record ignored, ...) on stderr as one line each."""
    for warning in warnings:
        err(f"portguard: warning: {printable(warning)}")


def printable(text: str) -> str:
    """`text` with control characters (a newline in a file name, ...) shown as escapes."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
