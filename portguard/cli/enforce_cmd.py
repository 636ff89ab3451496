"""`portguard enforce POLICY`: the long-running divert enforcer, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from threading import Event
from types import FrameType
from typing import Annotated

import typer

from portguard.backends.divert import run_enforcer
from portguard.cli.output import err, print_warnings
from portguard.policy import load_policy

__all__ = ["register"]


def enforce(
    policy: Annotated[Path, typer.Argument(help="The policy file to enforce.")],
) -> int:
    """Divert inbound new connections and datagrams; drop what POLICY does not allow."""
    loaded = load_policy(policy)
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    stop = Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        counts = run_enforcer(
            loaded.policy,
            stop,
            on_ready=lambda text: err(f"portguard: enforcing {policy}; {text}"),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    err(
        f"portguard: stopped; {counts.accepted} accepted, {counts.dropped} dropped,"
        f" {counts.flows_seen} outbound UDP datagrams tracked"
        + (f", {counts.reinject_failed} re-injections failed" if counts.reinject_failed else "")
    )
    return 0


def register(app: typer.Typer) -> None:
    """Add `enforce` to the app."""
    app.command("enforce")(enforce)
