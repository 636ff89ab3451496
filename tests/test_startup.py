"""Start-up: a run imports only the module of the command it names (cli/app.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from portguard.cli.app import COMMAND_MODULES

POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
SHOW_MODULES = (
    "import json, sys; from portguard.cli import main; code = main(sys.argv[1:]);"
    " print(json.dumps([code, sorted(m for m in sys.modules if m.startswith('portguard.cli.'))]),"
    " file=sys.stderr)"
)


def _run(*args: str) -> tuple[int, set[str]]:
    """Exit code and the portguard.cli.* modules a fresh interpreter imported for `args`."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW_MODULES, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    code, modules = json.loads(result.stderr.strip().splitlines()[-1])
    return code, {m.removeprefix("portguard.cli.") for m in modules}


def test_render_imports_only_its_own_command_module() -> None:
    """`render` loads render_cmd and none of the other command modules."""
    code, modules = _run("render", str(POLICY))
    assert code == 0
    commands = modules & set(COMMAND_MODULES.values())
    assert commands == {"render_cmd"}


def test_option_before_the_command_still_finds_it() -> None:
    """`--debug check --no-kernel` loads check_cmd only."""
    code, modules = _run("--debug", "check", "--no-kernel", str(POLICY))
    assert code == 0
    assert modules & set(COMMAND_MODULES.values()) == {"check_cmd"}


def test_help_registers_every_command() -> None:
    """Plain --help imports every command module, so it lists every command."""
    result = subprocess.run(
        [sys.executable, "-m", "portguard", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hidden = {"revert-at-deadline"}
    for name in set(COMMAND_MODULES) - hidden:
        assert f" {name} " in result.stdout, name
