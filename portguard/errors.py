"""Typed errors the core raises; the CLI turns each into one line and an exit code."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Location", "PolicyError", "PortguardError"]


@dataclass(frozen=True)
class Location:
    """A place in a file: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class PortguardError(Exception):
    """Base of every error the core raises on purpose."""

    # Put before the message when it is the last word of a command (errors not about a file).
    prefix = ""


class PolicyError(PortguardError):
    """A policy (or a file it names) is invalid; carries where."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message
