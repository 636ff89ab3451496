"""Install and uninstall the systemd units that enforce the policy at boot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from portguard.errors import PortguardError
from portguard.policy import load_policy

__all__ = [
    "POLICY_PATH",
    "SHIPPED_EXECUTABLE",
    "UNIT_DIR",
    "UNIT_FILES",
    "InstallError",
    "InstallReport",
    "SystemctlMode",
    "SystemctlRun",
    "UninstallReport",
    "default_executable",
    "install",
    "render_unit",
    "shipped_dir",
    "systemctl_mode",
    "systemd_booted",
    "uninstall",
]

CHECKOUT = Path(__file__).resolve().parent.parent
UNIT_DIR = Path("etc/systemd/system")
POLICY_PATH = Path("etc/portguard/policy.yaml")
UNIT_FILES = (
    "portguard.service",
    "portguard.path",
    "portguard-reload.service",
    "portguard-metrics.service",
    "portguard-metrics.timer",
)
ENABLED_UNITS = ("portguard.service", "portguard.path", "portguard-metrics.timer")
SHIPPED_EXECUTABLE = "/usr/local/bin/portguard"
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")
SYSTEMCTL_TIMEOUT = 60


class InstallError(PortguardError):
    """The units or the policy cannot be installed or removed as asked."""


class SystemctlMode(StrEnum):
    """How install and uninstall talk to systemd."""

    LIVE = "live"  # the running systemd: daemon-reload, enable/disable
    OFFLINE = "offline"  # `systemctl --root=DIR`: enable symlinks in another root, no daemon
    SKIP = "skip"  # not at all (asked to, or no systemd running)


@dataclass(frozen=True)
class SystemctlRun:
    """One systemctl command line and what it said."""

    argv: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class InstallReport:
    """What install did: unit files written, the policy file, and the systemctl calls."""

    units: tuple[Path, ...]
    executable: str
    policy: Path
    policy_created: bool
    mode: SystemctlMode
    skip_reason: str | None
    systemctl: tuple[SystemctlRun, ...]


@dataclass(frozen=True)
class UninstallReport:
    """What uninstall did: unit files removed, and what it left alone on purpose."""

    removed: tuple[Path, ...]
    policy: Path
    mode: SystemctlMode
    skip_reason: str | None
    systemctl: tuple[SystemctlRun, ...]


def shipped_dir() -> Path:
    """The checkout's systemd/ directory holding the shipped unit files."""
    return CHECKOUT / "systemd"


def default_executable() -> str:
    """The `portguard` script installed next to this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "portguard"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("portguard")
    if found is None:
        raise InstallError("cannot find the portguard executable; name it with --executable PATH")
    return str(Path(found).absolute())


def render_unit(text: str, executable: str) -> str:
    """A shipped unit's text with the real executable path in place of the shipped one."""
    if not SAFE_PATH.match(executable) or "/../" in executable:
        raise InstallError(
            f"executable path {executable!r} must be absolute and use only"
            " letters, digits and _ . / + -"
        )
    return text.replace(SHIPPED_EXECUTABLE, executable)


def systemd_booted() -> bool:
    """Whether this machine runs systemd as its init (sd_booted: /run/systemd/system exists)."""
    return Path("/run/systemd/system").is_dir()


def systemctl_mode(root: Path, *, skip: bool, booted: bool) -> tuple[SystemctlMode, str | None]:
    """How to call systemctl for `root`, and why not when it is skipped."""
    if skip:
        return SystemctlMode.SKIP, "skipped as asked (--no-systemctl)"
    if root.resolve() != Path("/"):
        return SystemctlMode.OFFLINE, None
    if not booted:
        return SystemctlMode.SKIP, "systemd is not running here (a container?)"
    return SystemctlMode.LIVE, None


def install(
    root: Path,
    executable: str,
    policy_source: Path | None,
    mode: SystemctlMode,
    skip_reason: str | None = None,
) -> InstallReport:
    """Write the units under `root`, create the policy if absent, and enable the units."""
    _require_root_for(root)
    units_text = {name: _read_shipped(name) for name in UNIT_FILES}
    source = policy_source if policy_source is not None else CHECKOUT / "policies/default.yaml"
    load_policy(source)  # never install a policy that would fail at boot
    rendered = {name: render_unit(text, executable) for name, text in units_text.items()}
    unit_dir = root / UNIT_DIR
    written = []
    for name, text in rendered.items():
        written.append(_write(unit_dir / name, text, 0o644))
    policy = root / POLICY_PATH
    created = not policy.exists()
    if created:
        _write(policy, _read(source), 0o644)
    runs: tuple[SystemctlRun, ...] = ()
    if mode is SystemctlMode.LIVE:
        runs = (_systemctl(root, "daemon-reload"), _systemctl(root, "enable", *ENABLED_UNITS))
    elif mode is SystemctlMode.OFFLINE:
        runs = (_systemctl(root, "enable", *ENABLED_UNITS),)
    return InstallReport(
        units=tuple(written),
        executable=executable,
        policy=policy,
        policy_created=created,
        mode=mode,
        skip_reason=skip_reason,
        systemctl=runs,
    )


def uninstall(root: Path, mode: SystemctlMode, skip_reason: str | None = None) -> UninstallReport:
    """Disable and remove the units under `root`; the policy and the live rules stay."""
    _require_root_for(root)
    unit_dir = root / UNIT_DIR
    runs: list[SystemctlRun] = []
    present = [name for name in UNIT_FILES if (unit_dir / name).exists()]
    if mode is SystemctlMode.LIVE and present:
        runs.append(_systemctl(root, "disable", "--now", "portguard.path"))
        runs.append(_systemctl(root, "disable", "portguard.service"))
    elif mode is SystemctlMode.OFFLINE and present:
        runs.append(_systemctl(root, "disable", *ENABLED_UNITS))
    removed = []
    for name in present:
        path = unit_dir / name
        try:
            path.unlink()
        except OSError as exc:
            raise InstallError(f"{path}: cannot remove: {exc.strerror or exc}") from None
        removed.append(path)
    if mode is SystemctlMode.LIVE and present:
        runs.append(_systemctl(root, "daemon-reload"))
    return UninstallReport(
        removed=tuple(removed),
        policy=root / POLICY_PATH,
        mode=mode,
        skip_reason=skip_reason,
        systemctl=tuple(runs),
    )


def _require_root_for(root: Path) -> None:
    if root.resolve() == Path("/") and os.geteuid() != 0:
        raise InstallError("installing into / needs root; run as root (or use --root DIR)")


def _read_shipped(name: str) -> str:
    path = shipped_dir() / name
    if not path.is_file():
        raise InstallError(f"{path}: shipped unit file missing; install from a portguard checkout")
    return _read(path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _write(path: Path, text: str, mode: int) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(text, encoding="utf-8")
        temp.chmod(mode)
        temp.replace(path)
    except OSError as exc:
        raise InstallError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def _systemctl(root: Path, *args: str) -> SystemctlRun:
    argv: Sequence[str] = ["systemctl"]
    if root.resolve() != Path("/"):
        argv = [*argv, f"--root={root.resolve()}"]
    argv = [*argv, *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{' '.join(argv)}: {exc}") from None
    said = " ".join((done.stdout + done.stderr).split())
    if done.returncode != 0:
        raise InstallError(f"{' '.join(argv)} failed (exit {done.returncode}): {said}")
    return SystemctlRun(argv=tuple(argv), output=said)
