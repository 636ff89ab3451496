"""The `portguard` command line: thin typer wrappers around the core."""

from portguard.cli.app import build_app, main

__all__ = ["build_app", "main"]
