"""The CLI feels native: --version, -h, no <bool>, POLICY in usage, examples, completion."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from portguard import __version__
from portguard.cli import main
from portguard.cli.app import app
from portguard.cli.help_text import EPILOGS
from tests.netns import VENV_BIN

COMMANDS = sorted(EPILOGS)


def _visible_commands() -> list[str]:
    """Every command a user can see in `portguard -h`."""
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    names = group.list_commands(ctx)  # type: ignore[attr-defined]
    return [n for n in names if not group.get_command(ctx, n).hidden]  # type: ignore[attr-defined]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The help text of argv, asserting exit 0 and nothing on stderr."""
    assert main([*argv]) == 0
    said = capsys.readouterr()
    assert said.err == ""
    return said.out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flags(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--version and -V print `portguard VERSION` and exit 0."""
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"portguard {__version__}\n"


def test_every_visible_command_has_an_example_and_exit_codes() -> None:
    """The epilog table covers exactly the commands `portguard -h` lists."""
    assert sorted(_visible_commands()) == COMMANDS


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_dash_h_everywhere_natively(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """-h works for the app and each command: no <bool>, no {arg} in usage, examples shown."""
    argv = [command, "-h"] if command else ["-h"]
    text = _help(capsys, *argv)
    assert _help(capsys, *argv[:-1], "--help") == text
    assert "<bool>" not in text
    assert "<list[" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage
    assert not re.search(r"\b(policy|old|new|shell|row_id)\b", usage)
    if command:
        assert "Examples:" in text and "Exit codes:" in text
        first_example = EPILOGS[command][0][0]
        assert f"$ {first_example[:40]}" in text


def test_usage_names_arguments_in_capitals(capsys: pytest.CaptureFixture[str]) -> None:
    """`apply -h` reads `Usage: portguard apply [OPTIONS] POLICY`."""
    text = _help(capsys, "apply", "-h")
    assert "Usage: portguard apply [OPTIONS] POLICY" in text
    assert re.search(
        r"Usage: portguard rollback \[OPTIONS\] \[ID\]\s", _help(capsys, "rollback", "-h")
    )
    assert re.search(
        r"Usage: portguard check \[OPTIONS\] POLICY\.\.\.\s", _help(capsys, "check", "-h")
    )


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a pty")
def test_help_is_rich_on_a_terminal_and_plain_piped() -> None:
    """On a terminal -h draws rich panels; piped it is plain text and rich is not imported."""
    argv = [sys.executable, "-m", "portguard", "render", "-h"]
    tty = subprocess.run(
        ["script", "-qec", " ".join(argv), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "╭─" in tty and "POLICY" in tty  # a rich panel's corner
    show = "import runpy, sys; sys.argv = ['portguard', 'render', '-h']\n"
    show += "try:\n    runpy.run_module('portguard', run_name='__main__')\n"
    show += "except SystemExit:\n    print('rich' in sys.modules)"
    piped = subprocess.run(
        [sys.executable, "-c", show], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "╭" not in piped
    assert "Usage: portguard render [OPTIONS] POLICY" in piped
    assert piped.rstrip().endswith("False")


def test_uninstall_root_help_says_remove(capsys: pytest.CaptureFixture[str]) -> None:
    """uninstall --root talks about removing, not installing."""
    text = " ".join(_help(capsys, "uninstall", "-h").split())
    assert "Remove what was installed under this directory" in text.replace("│ ", "")


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o default -F _portguard_completion portguard"),
        ("zsh", "#compdef portguard"),
        ("fish", "complete --command portguard"),
    ],
)
def test_completion_scripts(shell: str, marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`portguard completion SHELL` prints that shell's script."""
    assert main(["completion", shell]) == 0
    assert marker in capsys.readouterr().out


def test_completion_unknown_shell_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unsupported shell is a usage error: exit 1, one line."""
    assert main(["completion", "tcsh"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_options_for_real() -> None:
    """Real bash sources the script and completes `ap` to apply and `apply --con` to --confirm."""
    script = (
        "source <(portguard completion bash)\n"
        "COMP_WORDS=(portguard ap); COMP_CWORD=1; _portguard_completion portguard\n"
        'echo "1:${COMPREPLY[*]}"\n'
        "COMP_WORDS=(portguard apply --con); COMP_CWORD=2; _portguard_completion portguard\n"
        'echo "2:${COMPREPLY[*]}"\n'
    )
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "1:apply" in done.stdout.splitlines()
    assert "2:--confirm" in done.stdout.splitlines()


def test_python_dash_m_version() -> None:
    """`python -m portguard -V` works too (the entry point is main())."""
    done = subprocess.run(
        [sys.executable, "-m", "portguard", "-V"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout == f"portguard {__version__}\n"
