"""The `--format` option that history, ports, bans, services (table/json) and show, status
(text/json) share."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

__all__ = ["TableFormat", "TableFormatOption", "TextFormat", "TextFormatOption"]


class TableFormat(StrEnum):
    """A table for people, or JSON."""

    TABLE = "table"
    JSON = "json"


class TextFormat(StrEnum):
    """Text for people, or JSON."""

    TEXT = "text"
    JSON = "json"


TableFormatOption = Annotated[TableFormat, typer.Option("--format", "-f", help="table or json.")]
TextFormatOption = Annotated[TextFormat, typer.Option("--format", "-f", help="text or json.")]
