"""`portguard install` / `uninstall` into a temporary root (never this machine's /etc)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from portguard.cli import main
from portguard.install import (
    InstallError,
    SystemctlMode,
    default_executable,
    render_unit,
    systemctl_mode,
)

CHECKOUT = Path(__file__).resolve().parent.parent
UNIT_DIR = Path("etc/systemd/system")
POLICY = Path("etc/portguard/policy.yaml")
FAKE_BIN = "/opt/portguard/bin/portguard"

needs_systemctl = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="systemctl is not installed"
)


def _install(root: Path, *extra: str) -> int:
    return main(["install", "--root", str(root), "--executable", FAKE_BIN, *extra])


def test_install_writes_units_with_the_executable_and_the_default_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Units get the real executable path; the bundled default becomes the policy."""
    assert _install(tmp_path, "--no-systemctl") == 0
    service = (tmp_path / UNIT_DIR / "portguard.service").read_text(encoding="utf-8")
    assert f"ExecStart={FAKE_BIN} apply --boot /etc/portguard/policy.yaml" in service
    assert "/usr/local/bin/portguard" not in service
    assert (tmp_path / UNIT_DIR / "portguard.path").is_file()
    assert (tmp_path / UNIT_DIR / "portguard-reload.service").is_file()
    default = (CHECKOUT / "policies/default.yaml").read_text(encoding="utf-8")
    assert (tmp_path / POLICY).read_text(encoding="utf-8") == default
    said = capsys.readouterr().out
    assert "systemctl not called: skipped as asked (--no-systemctl)" in said
    assert "nothing was applied now" in said


def test_install_never_overwrites_an_existing_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --policy an admin's policy stays byte for byte and install says it kept it."""
    (tmp_path / POLICY).parent.mkdir(parents=True)
    (tmp_path / POLICY).write_text("# mine\nversion: 1\nallow: []\n", encoding="utf-8")
    assert _install(tmp_path, "--no-systemctl") == 0
    assert (tmp_path / POLICY).read_text(encoding="utf-8") == "# mine\nversion: 1\nallow: []\n"
    assert "kept the existing" in capsys.readouterr().out


def test_install_policy_new_over_an_existing_one_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--policy NEW over a different policy is one error line, exit 1, and nothing written."""
    (tmp_path / POLICY).parent.mkdir(parents=True)
    (tmp_path / POLICY).write_text("# mine\nversion: 1\nallow: []\n", encoding="utf-8")
    other = CHECKOUT / "policies/web-server.yaml"
    assert _install(tmp_path, "--no-systemctl", "--policy", str(other)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"portguard: {tmp_path / POLICY} exists and differs from {other}")
    assert "--replace-policy" in error[0]
    assert (tmp_path / POLICY).read_text(encoding="utf-8") == "# mine\nversion: 1\nallow: []\n"
    assert not (tmp_path / UNIT_DIR).exists()


def test_install_replace_policy_swaps_it_and_keeps_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--policy NEW --replace-policy installs NEW and saves the old one as policy.yaml.old."""
    (tmp_path / POLICY).parent.mkdir(parents=True)
    (tmp_path / POLICY).write_text("# mine\nversion: 1\nallow: []\n", encoding="utf-8")
    other = CHECKOUT / "policies/web-server.yaml"
    assert _install(tmp_path, "--no-systemctl", "--policy", str(other), "--replace-policy") == 0
    assert (tmp_path / POLICY).read_bytes() == other.read_bytes()
    saved = tmp_path / "etc/portguard/policy.yaml.old"
    assert saved.read_text(encoding="utf-8") == "# mine\nversion: 1\nallow: []\n"
    assert f"old one saved as {saved}" in capsys.readouterr().out


def test_install_writes_man_page_and_completions_and_uninstall_removes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """install puts portguard(1) and bash/zsh/fish completion under usr/local/share."""
    assert _install(tmp_path, "--no-systemctl") == 0
    share = tmp_path / "usr/local/share"
    page = share / "man/man1/portguard.1"
    assert page.read_bytes() == (CHECKOUT / "man/portguard.1").read_bytes()
    bash = (share / "bash-completion/completions/portguard").read_text(encoding="utf-8")
    assert "complete -o default -F _portguard_completion portguard" in bash
    assert "#compdef portguard" in (share / "zsh/site-functions/_portguard").read_text()
    fish = (share / "fish/vendor_completions.d/portguard.fish").read_text(encoding="utf-8")
    assert fish.startswith("complete --command portguard")
    capsys.readouterr()
    assert main(["uninstall", "--root", str(tmp_path), "--no-systemctl"]) == 0
    assert f"removed {page}" in capsys.readouterr().out
    assert not page.exists()
    assert not (share / "zsh/site-functions/_portguard").exists()


def test_install_policy_option_seeds_a_new_policy(tmp_path: Path) -> None:
    """With no policy yet, --policy FILE becomes /etc/portguard/policy.yaml."""
    source = CHECKOUT / "policies/web-server.yaml"
    assert _install(tmp_path, "--no-systemctl", "--policy", str(source)) == 0
    assert (tmp_path / POLICY).read_bytes() == source.read_bytes()


def test_install_refuses_an_invalid_policy_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy that would fail at boot is one located error line, and nothing is written."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nallow:\n  - port: 0\n", encoding="utf-8")
    root = tmp_path / "root"
    assert _install(root, "--no-systemctl", "--policy", str(bad)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"{bad}:3:11: ")
    assert not root.exists()


@pytest.mark.parametrize("path", ["portguard", "/opt/my tools/portguard", "/x/$(id)"])
def test_unsafe_executable_paths_are_refused(path: str) -> None:
    """The executable must be an absolute path of plain characters (no quoting in units)."""
    with pytest.raises(InstallError, match="must be absolute"):
        render_unit("ExecStart=/usr/local/bin/portguard apply", path)


def test_default_executable_is_this_venvs_portguard() -> None:
    """Without --executable, the units run the portguard installed next to this Python."""
    assert default_executable() == str(CHECKOUT / ".venv" / "bin" / "portguard")


def test_systemctl_mode_decisions(tmp_path: Path) -> None:
    """Skip when asked or when systemd is not running; offline for another root; else live."""
    root = Path("/")
    assert systemctl_mode(root, skip=True, booted=True)[0] is SystemctlMode.SKIP
    assert systemctl_mode(tmp_path, skip=False, booted=True) == (SystemctlMode.OFFLINE, None)
    mode, why = systemctl_mode(root, skip=False, booted=False)
    assert mode is SystemctlMode.SKIP
    assert why is not None and "systemd is not running" in why
    assert systemctl_mode(root, skip=False, booted=True) == (SystemctlMode.LIVE, None)


@needs_systemctl
def test_install_enables_offline_and_uninstall_leaves_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In another root, enable links the units into sysinit/paths; uninstall undoes only that."""
    assert _install(tmp_path) == 0
    units = tmp_path / UNIT_DIR
    service_link = units / "sysinit.target.wants" / "portguard.service"
    path_link = units / "paths.target.wants" / "portguard.path"
    assert service_link.is_symlink()
    assert str(service_link.readlink()) == "/etc/systemd/system/portguard.service"
    assert path_link.is_symlink()
    assert f"ran systemctl --root={tmp_path.resolve()} enable" in capsys.readouterr().out
    policy_before = (tmp_path / POLICY).read_text(encoding="utf-8")

    assert main(["uninstall", "--root", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert not service_link.is_symlink()
    assert not path_link.is_symlink()
    assert sorted(p.name for p in units.iterdir() if p.is_file()) == []
    assert (tmp_path / POLICY).read_text(encoding="utf-8") == policy_before
    assert "left the live rules in force" in said


def test_uninstall_with_nothing_installed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uninstalling twice is harmless and says there was nothing to remove."""
    assert main(["uninstall", "--root", str(tmp_path), "--no-systemctl"]) == 0
    assert "no portguard units were installed" in capsys.readouterr().out


def test_install_policy_same_as_existing_is_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--policy naming a file equal to the installed policy is no conflict: exit 0, said so."""
    source = CHECKOUT / "policies/web-server.yaml"
    (tmp_path / POLICY).parent.mkdir(parents=True)
    (tmp_path / POLICY).write_bytes(source.read_bytes())
    assert _install(tmp_path, "--no-systemctl", "--policy", str(source)) == 0
    assert f"{tmp_path / POLICY} already is {source}" in capsys.readouterr().out
    assert not (tmp_path / "etc/portguard/policy.yaml.old").exists()
