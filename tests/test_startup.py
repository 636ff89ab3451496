"""Start-up: a run imports only what the command it names needs (cli/app.py, issue 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from portguard.cli.app import COMMAND_MODULES
from portguard.cli.render_cmd import Target, renderer
from tests.netns import Netns, portguard_argv

POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
SHOW_MODULES = (
    "import json, sys; from portguard.cli import main; code = main(sys.argv[1:]);"
    " print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)"
)
# What an unchanged apply must not pay for: the apply engine, the lockout guard, the
# policy loader (PyYAML), python-nftables, the renderer, the Windows back end, typer's
# pydantic adapters (typer 0.29), the terminal tables.
NOT_WHEN_UNCHANGED = (
    "portguard.apply",
    "portguard.cli.apply_full",
    "portguard.cli.lockout_guard",
    "portguard.policy.load",
    "yaml",
    "nftables",
    "portguard.backends.nftables",
    "portguard.backends.nft_swap",
    "portguard.backends.windows",
    "portguard.render.nftables",
    "pydantic",
    "rich",
)


def _modules(argv: list[str]) -> tuple[int, set[str]]:
    """Exit code and every module a fresh interpreter running main(argv[1:]) imported."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    code, modules = json.loads(result.stderr.strip().splitlines()[-1])
    return code, set(modules)


def _run(*args: str) -> tuple[int, set[str]]:
    """Exit code and the portguard.cli.* modules a fresh interpreter imported for `args`."""
    code, modules = _modules([sys.executable, "-c", SHOW_MODULES, *args])
    cli = {m.removeprefix("portguard.cli.") for m in modules if m.startswith("portguard.cli.")}
    return code, cli


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


def test_version_imports_no_command_module() -> None:
    """`--version` names no command and lists none, so no command module is imported."""
    code, modules = _run("--version")
    assert code == 0
    assert not modules & set(COMMAND_MODULES.values())


def test_check_no_kernel_imports_no_renderer_and_no_pydantic() -> None:
    """`check --no-kernel` neither renders nor touches nftables; no pydantic (typer 0.28)."""
    code, modules = _modules(
        [sys.executable, "-c", SHOW_MODULES, "check", "--no-kernel", str(POLICY)]
    )
    assert code == 0
    assert "portguard.policy.load" in modules  # the check itself ran
    for name in ("portguard.render.nftables", "portguard.backends.nftables", "pydantic"):
        assert name not in modules, name


def test_render_imports_only_the_renderer_asked_for() -> None:
    """`render -t netsh` imports the netsh renderer and not the nftables or WinDivert one."""
    code, modules = _modules(
        [sys.executable, "-c", SHOW_MODULES, "render", "-t", "netsh", str(POLICY)]
    )
    assert code == 0
    assert "portguard.render.netsh" in modules
    assert "portguard.render.nftables" not in modules
    assert "portguard.render.windivert" not in modules


@pytest.mark.parametrize("target", list(Target))
def test_every_target_has_a_renderer(target: Target) -> None:
    """Each --target names a renderer that exists and renders the bundled policy."""
    from portguard.policy import load_policy  # noqa: PLC0415 - only this test needs it

    assert renderer(target)(load_policy(POLICY).policy).strip()


@pytest.mark.netns
def test_unchanged_apply_imports_only_the_noop_path(netns: Netns, tmp_path: Path) -> None:
    """An unchanged re-apply decides from noop.py alone: no apply engine, guard or renderer."""
    policy, state = tmp_path / "policy.yaml", tmp_path / "state"
    policy.write_text("version: 1\nallow:\n  - port: 22\n", encoding="utf-8")
    args = ["apply", "--yes", "--state-dir", str(state), str(policy)]
    first = netns.run(portguard_argv(*args))
    assert "applied" in first.stdout
    again = netns.run([sys.executable, "-c", SHOW_MODULES, *args])
    assert "unchanged, nothing to do" in again.stdout
    code, modules = json.loads(again.stderr.strip().splitlines()[-1])
    assert code == 0
    assert "portguard.noop" in modules
    for name in NOT_WHEN_UNCHANGED:
        assert name not in modules, name
    changed = netns.run([sys.executable, "-c", SHOW_MODULES, *args[:-1], str(POLICY)])
    assert "applied" in changed.stdout  # another policy takes the full path
    assert "portguard.cli.apply_full" in json.loads(changed.stderr.strip().splitlines()[-1])[1]
