"""`portguard schema`: the JSON Schema of policy v1 for editors (yaml-language-server) and CI."""

from __future__ import annotations

import json

import typer

from portguard.cli.output import out
from portguard.policy.schema import policy_schema

__all__ = ["register"]


def schema() -> int:
    """Print the JSON Schema (draft 2020-12) of policy version 1.

    Save it next to your policies and point your editor at it with a first line of
    `# yaml-language-server: $schema=portguard-policy.schema.json`.
    """
    out(json.dumps(policy_schema(), indent=2))
    return 0


def register(app: typer.Typer) -> None:
    """Add `schema` to the app."""
    app.command("schema")(schema)
