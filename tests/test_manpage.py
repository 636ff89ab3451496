"""portguard(1): generated from the CLI, committed, rendered by man without warnings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from portguard.cli.help_text import EPILOGS
from portguard.cli.manpage import manpage

PAGE = Path(__file__).resolve().parent.parent / "man" / "portguard.1"


def test_committed_page_is_the_generated_one() -> None:
    """man/portguard.1 matches the CLI (regenerate: python -m portguard.cli.manpage)."""
    assert PAGE.read_text(encoding="utf-8") == manpage(), (
        "man/portguard.1 is stale: .venv/bin/python -m portguard.cli.manpage > man/portguard.1"
    )


def test_page_documents_every_command_and_exit_code() -> None:
    """Each visible command has a subsection; the exit status section lists 0, 1, 2 and 3."""
    text = manpage()
    for command in EPILOGS:
        assert f"\n.SS {command}\n" in text
    assert "\n.SS revert-at-deadline\n" not in text  # hidden, internal
    status = text.split(".SH EXIT STATUS", 1)[1].split(".SH", 1)[0]
    assert [line for line in status.splitlines() if line.startswith("\\fB")] == [
        "\\fB0\\fR",
        "\\fB1\\fR",
        "\\fB2\\fR",
        "\\fB3\\fR",
    ]


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man (man-db)")
def test_man_renders_without_warnings() -> None:
    """`man --warnings -l` renders the page with nothing on stderr and the sections in place."""
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    env.pop("MAN_KEEP_FORMATTING", None)
    done = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0
    assert done.stderr == ""
    for heading in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "FILES"):
        assert f"\n{heading}\n" in done.stdout
    assert "portguard apply [OPTIONS] POLICY" in done.stdout
