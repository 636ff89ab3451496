"""The `portguard` command line: thin typer wrappers around the core."""

from portguard.cli.app import app, main

__all__ = ["app", "main"]
