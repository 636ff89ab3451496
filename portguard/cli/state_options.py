"""The `--state-dir` and `--lock-timeout` options that apply, status and remove share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portguard.state import STATE_DIR_ENV, StateDir, default_state_dir

__all__ = ["LockTimeoutOption", "StateDirOption", "open_state_dir"]

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"Where portguard records what it applied (env {STATE_DIR_ENV};"
        " default /var/lib/portguard).",
        show_default=False,
    ),
]

LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0.0,
        help="Seconds to wait for another portguard holding the state dir's lock.",
    ),
]


def open_state_dir(path: Path | None) -> StateDir:
    """The state dir named on the command line, else the environment's or the default."""
    return StateDir(path if path is not None else default_state_dir())
